package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
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

// tcpResolver returns a resolver for the same server that only uses TCP.
func tcpResolver(r *net.Resolver) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return r.Dial(ctx, "tcp", addr)
	}}
}

func TestExternalName(t *testing.T) {
	svcs := []Service{
		{Namespace: "default", Name: "web", IPs: ips("10.96.0.10")},
		{Namespace: "default", Name: "ext", ExternalName: "Example.COM."},
		{Namespace: "default", Name: "alias", ExternalName: "web.default.svc.cluster.local"},
		{Namespace: "default", Name: "alias2", ExternalName: "alias.default.svc.cluster.local"},
		{Namespace: "default", Name: "loop1", ExternalName: "loop2.default.svc.cluster.local"},
		{Namespace: "default", Name: "loop2", ExternalName: "loop1.default.svc.cluster.local"},
		{Namespace: "default", Name: "dangling", ExternalName: "gone.default.svc.cluster.local"},
	}
	_, udp := startServer(t, svcs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for proto, r := range map[string]*net.Resolver{"udp": udp, "tcp": tcpResolver(udp)} {
		for _, tc := range []struct{ name, cname string }{
			{"ext.default.svc.cluster.local.", "example.com."},
			{"ext.", "example.com."},
			{"alias.default.svc.cluster.local.", "web.default.svc.cluster.local."},
			// A chain: Go's resolver reports the first CNAME it reads, from
			// the A or the CNAME answer, whichever arrives first.
			{"alias2.default.svc.cluster.local.", "alias.default.svc.cluster.local.|web.default.svc.cluster.local."},
		} {
			got, err := r.LookupCNAME(ctx, tc.name)
			if err != nil || !slices.Contains(strings.Split(tc.cname, "|"), got) {
				t.Errorf("%s: LookupCNAME(%s) = %q, %v; want %q", proto, tc.name, got, err, tc.cname)
			}
		}
		// An in-cluster target is followed: the A record comes with the CNAME.
		for _, name := range []string{"alias.default.svc.cluster.local.", "alias2.default.svc.cluster.local."} {
			got, err := r.LookupHost(ctx, name)
			if err != nil || !slices.Equal(got, []string{"10.96.0.10"}) {
				t.Errorf("%s: LookupHost(%s) = %v, %v; want [10.96.0.10]", proto, name, got, err)
			}
		}
		// An outside target gets the CNAME only (no upstream), a loop or a
		// dangling alias no address: each ends with an error, not a hang.
		for _, name := range []string{"ext.default.svc.cluster.local.", "loop1.default.svc.cluster.local.", "dangling.default.svc.cluster.local."} {
			if got, err := r.LookupHost(ctx, name); err == nil {
				t.Errorf("%s: LookupHost(%s) = %v, want an error", proto, name, got)
			}
		}
	}
}

func TestExternalNameRaw(t *testing.T) {
	s := New(Config{})
	s.Update([]Service{
		{Namespace: "default", Name: "web", IPs: ips("10.96.0.10")},
		{Namespace: "default", Name: "alias", ExternalName: "web.default.svc.cluster.local"},
		{Namespace: "default", Name: "ext", ExternalName: "db.example.com"},
	})
	parse := func(resp []byte) (rcode int, types []uint16) {
		t.Helper()
		_, _, _, off, err := parseQuestion(resp)
		if err != nil {
			t.Fatalf("question: %v", err)
		}
		// skipName skips a (possibly compressed) name starting at o.
		skipName := func(o int) int {
			for o < len(resp) {
				switch n := int(resp[o]); {
				case n == 0:
					return o + 1
				case n&0xc0 == 0xc0:
					return o + 2
				default:
					o += 1 + n
				}
			}
			t.Fatalf("name runs past the message")
			return 0
		}
		for range int(binary.BigEndian.Uint16(resp[6:8])) {
			off = skipName(off)
			if off+10 > len(resp) {
				t.Fatalf("short record")
			}
			rtype := binary.BigEndian.Uint16(resp[off:])
			rdlen := int(binary.BigEndian.Uint16(resp[off+8:]))
			off += 10
			if off+rdlen > len(resp) {
				t.Fatalf("short rdata")
			}
			if rtype == typeCNAME && skipName(off) != off+rdlen {
				t.Fatalf("CNAME rdata is not one name")
			}
			types = append(types, rtype)
			off += rdlen
		}
		if off != len(resp) {
			t.Fatalf("%d trailing bytes", len(resp)-off)
		}
		return int(binary.BigEndian.Uint16(resp[2:4]) & 0xf), types
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []uint16
	}{
		{"ext.default.svc.cluster.local", typeA, []uint16{typeCNAME}},
		{"ext.default.svc.cluster.local", typeAAAA, []uint16{typeCNAME}},
		{"ext.default.svc.cluster.local", typeCNAME, []uint16{typeCNAME}},
		{"alias.default.svc.cluster.local", typeA, []uint16{typeCNAME, typeA}},
		{"alias.default.svc.cluster.local", typeCNAME, []uint16{typeCNAME}},
		{"alias.default.svc.cluster.local", typeAAAA, []uint16{typeCNAME}},
	} {
		rcode, types := parse(s.Answer(query(7, tc.name, tc.qtype), netip.Addr{}, maxUDP))
		if rcode != rcodeOK || !slices.Equal(types, tc.want) {
			t.Errorf("%s type %d: rcode %d, answers %v; want 0, %v", tc.name, tc.qtype, rcode, types, tc.want)
		}
	}
}
