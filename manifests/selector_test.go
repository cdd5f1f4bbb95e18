package manifests

import "testing"

func TestParseSelector(t *testing.T) {
	labels := map[string]string{"env": "prod", "tier": "web", "gpu": "true"}
	tests := []struct {
		in, str string
		match   bool
	}{
		{"", "", true},
		{"env=prod", "env=prod", true},
		{"env==prod", "env=prod", true},
		{"env = prod , tier!=db", "env=prod,tier!=db", true},
		{"tier!=web", "tier!=web", false},
		{"env in (prod, staging)", "env in (prod,staging)", true},
		{"env notin (prod)", "env notin (prod)", false},
		{"missing notin (x)", "missing notin (x)", true},
		{"gpu", "gpu", true},
		{"!gpu", "!gpu", false},
		{"!legacy,example.com/zone", "!legacy,example.com/zone", false},
		{"env=", "env=", false},
	}
	for _, tt := range tests {
		s, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tt.in, err)
			continue
		}
		if got := s.String(); got != tt.str {
			t.Errorf("ParseSelector(%q).String() = %q, want %q", tt.in, got, tt.str)
		}
		if got := s.Matches(labels); got != tt.match {
			t.Errorf("%q matches = %v, want %v", tt.in, got, tt.match)
		}
		if s.Empty() != (tt.in == "") || len(s.Requirements()) == 0 != (tt.in == "") {
			t.Errorf("%q: Empty/Requirements inconsistent", tt.in)
		}
	}
	for _, bad := range []string{"env=prod tier=web", "env in prod", "env in (a", "env ~ x", "!", "-bad=x", "env=a b", ",", "env=x,"} {
		if s, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) = %v, want error", bad, s)
		}
	}
}

func TestSelectorFromSet(t *testing.T) {
	s := SelectorFromSet(map[string]string{"b": "2", "a": "1"})
	if s.String() != "a=1,b=2" {
		t.Fatalf("String() = %q", s.String())
	}
	if !s.Matches(map[string]string{"a": "1", "b": "2", "c": "3"}) || s.Matches(map[string]string{"a": "1"}) {
		t.Fatal("Matches is wrong")
	}
	if !SelectorFromSet(nil).Empty() {
		t.Fatal("empty set selector not empty")
	}
}
