package manifests

import (
	"math"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in          string
		value, mill int64
	}{
		{"0", 0, 0},
		{"1", 1, 1000},
		{"100m", 1, 100},
		{"1500m", 2, 1500},
		{"0.1", 1, 100},
		{".5", 1, 500},
		{"5.", 5, 5000},
		{"+2", 2, 2000},
		{"-1.5", -2, -1500},
		{"1Ki", 1024, 1024000},
		{"16Mi", 16 << 20, 16 << 20 * 1000},
		{"1.5Gi", 3 << 29, 3 << 29 * 1000},
		{"2Ti", 2 << 40, 2 << 40 * 1000},
		{"1Pi", 1 << 50, 1 << 50 * 1000},
		{"1Ei", 1 << 60, math.MaxInt64},
		{"1k", 1000, 1000000},
		{"64M", 64000000, 64000000000},
		{"1G", 1e9, 1e12},
		{"1T", 1e12, 1e15},
		{"1P", 1e15, 1e18},
		{"1E", 1e18, math.MaxInt64},
		{"1n", 1, 1},
		{"1500u", 1, 2},
		{"1e3", 1000, 1000000},
		{"1E3", 1000, 1000000},
		{"25e-1", 3, 2500},
		{"1e+2", 100, 100000},
		{"100Ei", math.MaxInt64, math.MaxInt64},
		{"-100Ei", math.MinInt64, math.MinInt64},
	}
	for _, tt := range tests {
		q, err := ParseQuantity(tt.in)
		if err != nil {
			t.Errorf("ParseQuantity(%q): %v", tt.in, err)
			continue
		}
		if q.Value() != tt.value || q.MilliValue() != tt.mill {
			t.Errorf("%q: Value %d MilliValue %d, want %d %d", tt.in, q.Value(), q.MilliValue(), tt.value, tt.mill)
		}
	}
	for _, bad := range []string{"", "-", ".", "1..2", "1.2.3", "16MB", "1 Mi", " 1", "1e", "1e-", "1ee3", "1e3.5", "Mi", "1KI", "1e31", "0x10", "1_000", "1/2", "1mi"} {
		if q, err := ParseQuantity(bad); err == nil {
			t.Errorf("ParseQuantity(%q) = %q, want error", bad, q)
		}
		if v := Quantity(bad).Value(); v != 0 {
			t.Errorf("Quantity(%q).Value() = %d, want 0", bad, v)
		}
	}
}

func TestQuantityCmp(t *testing.T) {
	tests := []struct {
		a, b Quantity
		want int
	}{
		{"1", "1000m", 0},
		{"1Ki", "1024", 0},
		{"1Gi", "1G", 1},
		{"100m", "0.2", -1},
		{"-1", "0", -1},
	}
	for _, tt := range tests {
		if got := tt.a.Cmp(tt.b); got != tt.want {
			t.Errorf("%s.Cmp(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	if Quantity("-3m").Sign() != -1 || Quantity("0Gi").Sign() != 0 || Quantity("3m").Sign() != 1 {
		t.Error("Sign is wrong")
	}
}
