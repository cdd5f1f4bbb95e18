package edgectl

import (
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-5 * time.Second, "<invalid>"},
		{-500 * time.Millisecond, "0s"},
		{0, "0s"},
		{5 * time.Second, "5s"},
		{119 * time.Second, "119s"},
		{3*time.Minute + 2*time.Second, "3m2s"},
		{4 * time.Minute, "4m"},
		{15*time.Minute + 30*time.Second, "15m"},
		{4 * time.Hour, "4h"},
		{4*time.Hour + 5*time.Minute, "4h5m"},
		{30 * time.Hour, "30h"},
		{2 * 24 * time.Hour, "2d"},
		{3*24*time.Hour + 5*time.Hour, "3d5h"},
		{20 * 24 * time.Hour, "20d"},
		{3 * 365 * 24 * time.Hour, "3y"},
		{(3*365 + 10) * 24 * time.Hour, "3y10d"},
		{10 * 365 * 24 * time.Hour, "10y"},
	} {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestAgeZeroIsUnknown(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got := age(now, time.Time{}); got != "<unknown>" {
		t.Errorf("age(zero) = %q", got)
	}
	if got := age(now, now.Add(-90*time.Second)); got != "90s" {
		t.Errorf("age(90s ago) = %q", got)
	}
}
