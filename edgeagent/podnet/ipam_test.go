package podnet

import (
	"net"
	"path/filepath"
	"testing"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIPAMAllocateReleasePersist(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ipam.json")
	cidr := mustCIDR(t, "10.244.3.0/29") // .1 gateway, .2-.6 pods, .7 broadcast
	m, err := NewIPAM(file, cidr)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Gateway().String(); got != "10.244.3.1" {
		t.Fatalf("gateway %s", got)
	}
	a, err := m.Allocate("a")
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "10.244.3.2" {
		t.Fatalf("first address %s, want 10.244.3.2", a)
	}
	again, err := m.Allocate("a")
	if err != nil || !again.Equal(a) {
		t.Fatalf("allocate again: %v %v, want %s", again, err, a)
	}
	b, _ := m.Allocate("b")
	if b.String() != "10.244.3.3" {
		t.Fatalf("second address %s", b)
	}
	if err := m.Release("a"); err != nil {
		t.Fatal(err)
	}
	if err := m.Release("a"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	// A released address is not reused at once.
	c, _ := m.Allocate("c")
	if c.String() != "10.244.3.4" {
		t.Fatalf("third address %s, want 10.244.3.4", c)
	}

	// Restart: the allocations survive.
	m2, err := NewIPAM(file, cidr)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Get("b"); !got.Equal(b) {
		t.Fatalf("after restart b=%v, want %s", got, b)
	}
	if got := m2.Get("a"); got != nil {
		t.Fatalf("after restart released a=%v", got)
	}
	var got []string
	for _, id := range []string{"d", "e", "f"} {
		ip, err := m2.Allocate(id)
		if err != nil {
			t.Fatalf("allocate %s: %v", id, err)
		}
		got = append(got, ip.String())
	}
	want := []string{"10.244.3.5", "10.244.3.6", "10.244.3.2"} // wraps around, skipping broadcast
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("allocations %v, want %v", got, want)
		}
	}
	if _, err := m2.Allocate("g"); err == nil {
		t.Fatal("allocation from a full CIDR succeeded")
	}
	if n := len(m2.Allocated()); n != 5 {
		t.Fatalf("%d allocated, want 5", n)
	}

	// Another CIDR discards the old state.
	m3, err := NewIPAM(file, mustCIDR(t, "10.244.9.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m3.Allocated()); n != 0 {
		t.Fatalf("%d allocations kept across a CIDR change", n)
	}
	if ip, _ := m3.Allocate("x"); ip.String() != "10.244.9.2" {
		t.Fatalf("new CIDR first address %s", ip)
	}
}

func TestIPAMRejects(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewIPAM(filepath.Join(dir, "a"), mustCIDR(t, "10.0.0.0/31")); err == nil {
		t.Fatal("/31 accepted")
	}
	if _, err := NewIPAM(filepath.Join(dir, "b"), mustCIDR(t, "fd00::/64")); err == nil {
		t.Fatal("IPv6 accepted")
	}
}
