package manifests

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Selector is a parsed label selector. The zero Selector matches everything.
type Selector struct {
	reqs []Requirement
}

// Requirement is one term of a selector.
type Requirement struct {
	Key      string
	Operator string // "=", "!=", "in", "notin", "exists", "!"
	Values   []string
}

// Empty reports whether the selector matches everything.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// Requirements returns the terms of the selector.
func (s Selector) Requirements() []Requirement { return append([]Requirement(nil), s.reqs...) }

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// Matches reports whether labels satisfy r.
func (r Requirement) Matches(labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Operator {
	case "=", "==", "in":
		if !ok {
			return false
		}
		for _, want := range r.Values {
			if v == want {
				return true
			}
		}
		return false
	case "!=", "notin":
		if !ok {
			return true
		}
		for _, want := range r.Values {
			if v == want {
				return false
			}
		}
		return true
	case "exists":
		return ok
	case "!":
		return !ok
	}
	return false
}

func (s Selector) String() string {
	parts := make([]string, 0, len(s.reqs))
	for _, r := range s.reqs {
		switch r.Operator {
		case "exists":
			parts = append(parts, r.Key)
		case "!":
			parts = append(parts, "!"+r.Key)
		case "in", "notin":
			parts = append(parts, r.Key+" "+r.Operator+" ("+strings.Join(r.Values, ",")+")")
		default:
			parts = append(parts, r.Key+r.Operator+r.Values[0])
		}
	}
	return strings.Join(parts, ",")
}

// SelectorFromSet returns the equality selector matching every label in set.
func SelectorFromSet(set map[string]string) Selector {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s Selector
	for _, k := range keys {
		s.reqs = append(s.reqs, Requirement{Key: k, Operator: "=", Values: []string{set[k]}})
	}
	return s
}

// ParseSelector parses kubectl's selector syntax:
// "env=prod,tier!=db", "env in (a,b)", "env notin (c)", "gpu", "!legacy".
func ParseSelector(text string) (Selector, error) {
	var s Selector
	p := selParser{in: text}
	p.skipSpace()
	if p.eof() {
		return s, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return Selector{}, fmt.Errorf("label selector %q: %w", text, err)
		}
		if err := ValidateLabelKey(r.Key); err != nil {
			return Selector{}, fmt.Errorf("label selector %q: key %q: %w", text, r.Key, err)
		}
		for _, v := range r.Values {
			if err := ValidateLabelValue(v); err != nil {
				return Selector{}, fmt.Errorf("label selector %q: value %q: %w", text, v, err)
			}
		}
		s.reqs = append(s.reqs, r)
		p.skipSpace()
		if p.eof() {
			return s, nil
		}
		if !p.consume(",") {
			return Selector{}, fmt.Errorf("label selector %q: expected ',' at offset %d", text, p.pos)
		}
	}
}

type selParser struct {
	in  string
	pos int
}

func (p *selParser) eof() bool { return p.pos >= len(p.in) }

func (p *selParser) skipSpace() {
	for p.pos < len(p.in) && (p.in[p.pos] == ' ' || p.in[p.pos] == '\t') {
		p.pos++
	}
}

func (p *selParser) consume(tok string) bool {
	if strings.HasPrefix(p.in[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func isSelWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '/'
}

func (p *selParser) word() string {
	start := p.pos
	for p.pos < len(p.in) && isSelWordByte(p.in[p.pos]) {
		p.pos++
	}
	return p.in[start:p.pos]
}

func (p *selParser) requirement() (Requirement, error) {
	p.skipSpace()
	if p.consume("!") {
		p.skipSpace()
		key := p.word()
		if key == "" {
			return Requirement{}, fmt.Errorf("expected a key after '!' at offset %d", p.pos)
		}
		return Requirement{Key: key, Operator: "!"}, nil
	}
	key := p.word()
	if key == "" {
		return Requirement{}, fmt.Errorf("expected a key at offset %d", p.pos)
	}
	p.skipSpace()
	switch {
	case p.eof() || p.in[p.pos] == ',':
		return Requirement{Key: key, Operator: "exists"}, nil
	case p.consume("=="), p.consume("="):
		p.skipSpace()
		return Requirement{Key: key, Operator: "=", Values: []string{p.word()}}, nil
	case p.consume("!="):
		p.skipSpace()
		return Requirement{Key: key, Operator: "!=", Values: []string{p.word()}}, nil
	}
	op := p.word()
	if op != "in" && op != "notin" {
		return Requirement{}, fmt.Errorf("unknown operator %q after key %q (want =, ==, !=, in, notin)", op, key)
	}
	p.skipSpace()
	if !p.consume("(") {
		return Requirement{}, fmt.Errorf("expected '(' after %q", op)
	}
	var vals []string
	for {
		p.skipSpace()
		vals = append(vals, p.word())
		p.skipSpace()
		if p.consume(")") {
			break
		}
		if !p.consume(",") {
			return Requirement{}, fmt.Errorf("expected ',' or ')' in value list of %q", key)
		}
	}
	return Requirement{Key: key, Operator: op, Values: vals}, nil
}

// Matches ANDs the expressions of t over a node's labels; a term without
// expressions matches nothing (as in Kubernetes).
func (t NodeSelectorTerm) Matches(labels map[string]string) bool {
	if len(t.MatchExpressions) == 0 {
		return false
	}
	for _, r := range t.MatchExpressions {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// Matches reports whether a node's labels satisfy r: In, NotIn, Exists,
// DoesNotExist, and Gt/Lt comparing integers.
func (r NodeSelectorRequirement) Matches(labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Operator {
	case "In":
		return ok && slices.Contains(r.Values, v)
	case "NotIn":
		return !ok || !slices.Contains(r.Values, v)
	case "Exists":
		return ok
	case "DoesNotExist":
		return !ok
	case "Gt", "Lt":
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == "Gt" {
			return have > want
		}
		return have < want
	}
	return false
}
