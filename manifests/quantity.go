package manifests

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// maxQuantityLen bounds the text of a quantity; Kubernetes quantities are short.
const maxQuantityLen = 64

// maxQuantityExponent bounds the decimal exponent ("1e300" is rejected).
const maxQuantityExponent = 30

var (
	binarySuffixes = map[string]int64{
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
	}
	decimalSuffixes = map[string]int{
		"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
	}
)

// ParseQuantity parses a Kubernetes quantity: a signed decimal number with
// an optional binary suffix (Ki Mi Gi Ti Pi Ei), decimal suffix (n u m k M
// G T P E) or decimal exponent (e3, E-2).
func ParseQuantity(s string) (Quantity, error) {
	if _, err := quantityRat(s); err != nil {
		return "", err
	}
	return Quantity(s), nil
}

// quantityRat returns the exact value of s.
func quantityRat(s string) (*big.Rat, error) {
	bad := func(why string) error {
		return fmt.Errorf("quantity %q: %s (want a number with an optional suffix, e.g. 100m, 64Mi, 1.5G, 2e3)", s, why)
	}
	if s == "" {
		return nil, bad("empty")
	}
	if len(s) > maxQuantityLen {
		return nil, fmt.Errorf("quantity is longer than %d characters", maxQuantityLen)
	}
	i := 0
	if s[0] == '+' || s[0] == '-' {
		i++
	}
	start, digits, dots := i, 0, 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		if s[i] == '.' {
			dots++
		} else {
			digits++
		}
		i++
	}
	if digits == 0 || dots > 1 {
		return nil, bad("invalid number")
	}
	num := s[start:i]
	suffix := s[i:]
	r, ok := new(big.Rat).SetString(strings.TrimSuffix(num, "."))
	if !ok {
		return nil, bad("invalid number")
	}
	if s[0] == '-' {
		r.Neg(r)
	}
	if m, ok := binarySuffixes[suffix]; ok {
		return r.Mul(r, new(big.Rat).SetInt64(m)), nil
	}
	exp, ok := decimalSuffixes[suffix]
	if !ok {
		if len(suffix) < 2 || (suffix[0] != 'e' && suffix[0] != 'E') {
			return nil, bad(fmt.Sprintf("unknown suffix %q", suffix))
		}
		n, err := strconv.Atoi(suffix[1:])
		if err != nil {
			return nil, bad(fmt.Sprintf("unknown suffix %q", suffix))
		}
		if n > maxQuantityExponent || n < -maxQuantityExponent {
			return nil, bad("exponent out of range")
		}
		exp = n
	}
	pow := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp >= 0 {
		r.Mul(r, new(big.Rat).SetInt(pow))
	} else {
		r.Quo(r, new(big.Rat).SetInt(pow))
	}
	return r, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// ratCeil rounds r away from zero to an integer, clamped to int64.
func ratCeil(r *big.Rat) int64 {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	} else if m.Sign() < 0 {
		q.Sub(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		if q.Sign() > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return q.Int64()
}

// Value returns q in whole units (bytes, cores, ...), rounded up away from
// zero. An unparsable quantity is 0.
func (q Quantity) Value() int64 {
	r, err := quantityRat(string(q))
	if err != nil {
		return 0
	}
	return ratCeil(r)
}

// MilliValue returns q in thousandths of a unit, rounded up away from zero.
// An unparsable quantity is 0.
func (q Quantity) MilliValue() int64 {
	r, err := quantityRat(string(q))
	if err != nil {
		return 0
	}
	return ratCeil(r.Mul(r, big.NewRat(1000, 1)))
}

// Cmp compares q and o exactly: -1, 0 or +1. An unparsable quantity counts as 0.
func (q Quantity) Cmp(o Quantity) int {
	a, err := quantityRat(string(q))
	if err != nil {
		a = new(big.Rat)
	}
	b, err := quantityRat(string(o))
	if err != nil {
		b = new(big.Rat)
	}
	return a.Cmp(b)
}

// Sign returns -1, 0 or +1 for a negative, zero or positive quantity.
func (q Quantity) Sign() int {
	r, err := quantityRat(string(q))
	if err != nil {
		return 0
	}
	return r.Sign()
}

// String returns the quantity as written.
func (q Quantity) String() string { return string(q) }
