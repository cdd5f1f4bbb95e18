package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func startServer(t *testing.T, svcs []Service, nsOf func(netip.Addr) string) (*Server, *net.Resolver) {
	t.Helper()
	s := New(Config{NamespaceOf: nsOf})
	s.Update(svcs)
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr.String())
	}}
	return s, r
}

func ips(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestResolve(t *testing.T) {
	many := make([]netip.Addr, 0, 100)
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)}))
	}
	svcs := []Service{
		{Namespace: "default", Name: "web", IPs: ips("10.96.0.10")},
		{Namespace: "prod", Name: "db", IPs: ips("10.244.1.5", "10.244.2.7")}, // headless
		{Namespace: "prod", Name: "web", IPs: ips("10.96.0.20")},
		{Namespace: "prod", Name: "v6", IPs: ips("fd00::10")},
		{Namespace: "prod", Name: "empty"},
		{Namespace: "big", Name: "many", IPs: many},
	}
	_, r := startServer(t, svcs, func(c netip.Addr) string {
		if c == netip.MustParseAddr("127.0.0.1") {
			return "prod"
		}
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"web.default.svc.cluster.local.", []string{"10.96.0.10"}},
		{"WEB.Default.SVC.cluster.local.", []string{"10.96.0.10"}},
		{"web.default.svc.", []string{"10.96.0.10"}},
		{"web.default.", []string{"10.96.0.10"}},
		{"web.", []string{"10.96.0.20"}}, // the client's namespace: prod
		{"db.prod.svc.cluster.local.", []string{"10.244.1.5", "10.244.2.7"}},
		{"v6.prod.svc.cluster.local.", []string{"fd00::10"}},
	} {
		got, err := r.LookupHost(ctx, tc.name)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	// 100 addresses do not fit 512 bytes: truncated over UDP, then TCP.
	got, err := r.LookupHost(ctx, "many.big.svc.cluster.local.")
	if err != nil || len(got) != 100 {
		t.Errorf("many: %d addresses, %v", len(got), err)
	}
	for _, name := range []string{"nope.default.svc.cluster.local.", "default.svc.cluster.local.", "x.y.cluster.local."} {
		_, err := r.LookupHost(ctx, name)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("%s: err = %v, want not found", name, err)
		}
	}
	for _, name := range []string{"example.com.", "nope."} {
		_, err := r.LookupHost(ctx, name)
		var de *net.DNSError
		if !errors.As(err, &de) || de.IsNotFound {
			t.Errorf("%s: err = %v, want refused (not NXDOMAIN)", name, err)
		}
	}
}

func query(id uint16, name string, qtype uint16) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	m = append(m, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, l := range splitLabels(name) {
		m = append(m, byte(len(l)))
		m = append(m, l...)
	}
	m = append(m, 0)
	m = binary.BigEndian.AppendUint16(m, qtype)
	return binary.BigEndian.AppendUint16(m, classIN)
}

func splitLabels(n string) []string {
	var out []string
	start := 0
	for i := 0; i < len(n); i++ {
		if n[i] == '.' {
			if i > start {
				out = append(out, n[start:i])
			}
			start = i + 1
		}
	}
	if start < len(n) {
		out = append(out, n[start:])
	}
	return out
}

func TestAnswerRaw(t *testing.T) {
	s := New(Config{})
	s.Update([]Service{{Namespace: "default", Name: "web", IPs: ips("10.96.0.10")}})
	client := netip.MustParseAddr("10.244.0.5")
	for _, tc := range []struct {
		name        string
		msg         []byte
		rcode, an   int
		aa, present bool
	}{
		{"A", query(7, "web.default.svc.cluster.local", typeA), rcodeOK, 1, true, true},
		{"AAAA of v4 service", query(7, "web.default.svc.cluster.local", typeAAAA), rcodeOK, 0, true, true},
		{"MX", query(7, "web.default.svc.cluster.local", 15), rcodeOK, 0, true, true},
		{"nxdomain", query(7, "x.default.svc.cluster.local", typeA), rcodeNXDomain, 0, true, true},
		{"refused", query(7, "example.com", typeA), rcodeRefused, 0, false, true},
		{"truncated question", query(7, "web.default", typeA)[:20], rcodeFormErr, 0, false, true},
		{"compression pointer", append(query(7, "", typeA)[:12], 0xc0, 12, 0, 1, 0, 1), rcodeFormErr, 0, false, true},
		{"short", []byte{1, 2, 3}, 0, 0, false, false},
	} {
		resp := s.Answer(tc.msg, client, 512)
		if !tc.present {
			if resp != nil {
				t.Errorf("%s: got a response", tc.name)
			}
			continue
		}
		if len(resp) < 12 || resp[0] != 0 || resp[1] != 7 {
			t.Errorf("%s: bad header % x", tc.name, resp)
			continue
		}
		flags := binary.BigEndian.Uint16(resp[2:])
		if int(flags&0xf) != tc.rcode || flags&0x8000 == 0 || (flags&0x0400 != 0) != tc.aa {
			t.Errorf("%s: flags %#04x, want rcode %d aa %v", tc.name, flags, tc.rcode, tc.aa)
		}
		if an := int(binary.BigEndian.Uint16(resp[6:])); an != tc.an {
			t.Errorf("%s: %d answers, want %d", tc.name, an, tc.an)
		}
	}
	// The A answer carries the address.
	resp := s.Answer(query(1, "web.default", typeA), client, 512)
	if got := fmt.Sprint(resp[len(resp)-4:]); got != "[10 96 0 10]" {
		t.Errorf("rdata = %s", got)
	}
}
