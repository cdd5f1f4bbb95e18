// Package dns is the agent's cluster DNS server: A and AAAA records for
// Services (svc, svc.ns, svc.ns.svc and svc.ns.svc.<domain>), the ClusterIP
// or, for headless Services, the ready endpoint IPs. Names under the cluster
// domain that do not exist get NXDOMAIN; any other name is REFUSED (there
// is no upstream forwarding). An ExternalName Service is answered with a
// CNAME to its external name, followed, when that name is itself under the
// cluster domain, by the target's records; an outside target gets the CNAME
// only (the agent never queries outside the cluster).
package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Service is a name the server answers for.
type Service struct {
	Namespace, Name string
	// IPs are the ClusterIP, or the ready endpoint IPs of a headless service.
	IPs []netip.Addr
	// ExternalName, when set, makes the name an alias (CNAME) of this DNS
	// name; IPs are then ignored.
	ExternalName string
	// Hosts are the IPs of the pod host names of a headless service, by
	// host name (hosts.go).
	Hosts map[string][]netip.Addr
}

// entry is what one service name resolves to: addresses, or an alias.
type entry struct {
	ips   []netip.Addr
	cname string // lower case, no trailing dot
}

// Config configures a Server. Zero fields get defaults.
type Config struct {
	// Domain is the cluster domain ("cluster.local").
	Domain string
	// TTL of the answers (5s).
	TTL time.Duration
	// NamespaceOf returns the namespace of the pod with the client's IP,
	// used for single-label names; nil or "" means "default".
	NamespaceOf func(client netip.Addr) string
	Logger      *slog.Logger
}

// Server answers queries from the services given to Update.
type Server struct {
	cfg   Config
	log   *slog.Logger
	names atomic.Pointer[map[string]entry] // by "name.namespace"
}

// New returns a Server with no services.
func New(cfg Config) *Server {
	if cfg.Domain == "" {
		cfg.Domain = "cluster.local"
	}
	cfg.Domain = strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.Update(nil)
	return s
}

// Update replaces the services.
func (s *Server) Update(svcs []Service) {
	m := make(map[string]entry, len(svcs))
	for _, sv := range svcs {
		e := entry{ips: append([]netip.Addr(nil), sv.IPs...)}
		if sv.ExternalName != "" {
			e = entry{cname: strings.ToLower(strings.TrimSuffix(sv.ExternalName, "."))}
		}
		m[strings.ToLower(sv.Name+"."+sv.Namespace)] = e
		addHosts(m, sv)
	}
	s.names.Store(&m)
}

// DNS constants.
const (
	typeA     = 1
	typeCNAME = 5
	typeAAAA  = 28
	classIN   = 1

	// maxCNAMEChain bounds how many in-cluster aliases are followed.
	maxCNAMEChain = 8

	rcodeOK       = 0
	rcodeFormErr  = 1
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5

	maxUDP = 512
)

// resolve maps a query name to its addresses; rcode is non-zero when there
// is no such name. auth tells whether the name is in the cluster domain.
func (s *Server) resolve(name string, client netip.Addr) (ips entry, rcode int, auth bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	names := *s.names.Load()
	lookup := func(svc, ns string) (entry, bool) {
		e, ok := names[svc+"."+ns]
		return e, ok
	}
	if name == s.cfg.Domain || strings.HasSuffix(name, "."+s.cfg.Domain) {
		rest := strings.TrimSuffix(strings.TrimSuffix(name, s.cfg.Domain), ".")
		l := strings.Split(rest, ".")
		if len(l) == 3 && l[2] == "svc" {
			if ips, ok := lookup(l[0], l[1]); ok {
				return ips, rcodeOK, true
			}
		}
		if e, ok := lookupHost(names, l); ok {
			return e, rcodeOK, true
		}
		return entry{}, rcodeNXDomain, true
	}
	l := strings.Split(name, ".")
	if e, ok := lookupHost(names, l); ok {
		return e, rcodeOK, true
	}
	switch {
	case len(l) == 3 && l[2] == "svc":
		if ips, ok := lookup(l[0], l[1]); ok {
			return ips, rcodeOK, true
		}
		return entry{}, rcodeNXDomain, true
	case len(l) == 2:
		if ips, ok := lookup(l[0], l[1]); ok {
			return ips, rcodeOK, true
		}
	case len(l) == 1 && l[0] != "":
		ns := ""
		if s.cfg.NamespaceOf != nil {
			ns = s.cfg.NamespaceOf(client)
		}
		if ns == "" {
			ns = "default"
		}
		if ips, ok := lookup(l[0], ns); ok {
			return ips, rcodeOK, true
		}
	}
	return entry{}, rcodeRefused, false
}

// inDomain reports whether name (lower case, no trailing dot) is under the
// cluster domain.
func (s *Server) inDomain(name string) bool {
	return strings.HasSuffix(name, "."+s.cfg.Domain)
}

// appendName appends name (no trailing dot) in wire format, uncompressed.
func appendName(b []byte, name string) []byte {
	for l := range strings.SplitSeq(name, ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

var errFormat = errors.New("malformed dns message")

// parseQuestion reads the single question of msg: its name, type and class
// and the offset of the end of the question.
func parseQuestion(msg []byte) (name string, qtype, qclass uint16, end int, err error) {
	if binary.BigEndian.Uint16(msg[4:6]) != 1 {
		return "", 0, 0, 0, errFormat
	}
	off := 12
	var labels []string
	total := 0
	for {
		if off >= len(msg) {
			return "", 0, 0, 0, errFormat
		}
		n := int(msg[off])
		off++
		if n == 0 {
			break
		}
		if n > 63 || off+n > len(msg) { // also rejects compression pointers
			return "", 0, 0, 0, errFormat
		}
		total += n + 1
		if total > 255 {
			return "", 0, 0, 0, errFormat
		}
		labels = append(labels, string(msg[off:off+n]))
		off += n
	}
	if off+4 > len(msg) {
		return "", 0, 0, 0, errFormat
	}
	qtype = binary.BigEndian.Uint16(msg[off:])
	qclass = binary.BigEndian.Uint16(msg[off+2:])
	return strings.Join(labels, ".") + ".", qtype, qclass, off + 4, nil
}

// Answer builds the response to query msg from client; nil if msg is not
// even a DNS header. limit bounds the response size (answers that do not fit
// are dropped and the TC bit set); 0 means no limit.
func (s *Server) Answer(msg []byte, client netip.Addr, limit int) []byte {
	if len(msg) < 12 || msg[2]&0x80 != 0 { // too short, or a response
		return nil
	}
	flags := binary.BigEndian.Uint16(msg[2:4])
	opcode := flags & 0x7800
	resp := make([]byte, 12, 512)
	copy(resp[0:2], msg[0:2])
	hdr := func(rcode int, aa bool, qd, an int, tc bool) {
		f := 0x8000 | opcode | flags&0x0100 | uint16(rcode)
		if aa {
			f |= 0x0400
		}
		if tc {
			f |= 0x0200
		}
		binary.BigEndian.PutUint16(resp[2:], f)
		binary.BigEndian.PutUint16(resp[4:], uint16(qd))
		binary.BigEndian.PutUint16(resp[6:], uint16(an))
		binary.BigEndian.PutUint16(resp[8:], 0)
		binary.BigEndian.PutUint16(resp[10:], 0)
	}
	if opcode != 0 {
		hdr(rcodeNotImp, false, 0, 0, false)
		return resp
	}
	name, qtype, qclass, end, err := parseQuestion(msg)
	if err != nil {
		hdr(rcodeFormErr, false, 0, 0, false)
		return resp
	}
	resp = append(resp, msg[12:end]...)
	e, rcode, auth := s.resolve(name, client)
	if rcode != rcodeOK || qclass != classIN {
		if qclass != classIN && rcode == rcodeOK {
			rcode = rcodeRefused
		}
		hdr(rcode, auth, 1, 0, false)
		return resp
	}
	ttl := uint32(s.cfg.TTL / time.Second)
	an, tc := 0, false
	owner := uint16(12) // offset of the name the next records are for
	rr := func(rtype uint16, rdata []byte) bool {
		if limit > 0 && len(resp)+12+len(rdata) > limit {
			tc = true
			return false
		}
		resp = append(resp, 0xc0|byte(owner>>8), byte(owner))
		resp = binary.BigEndian.AppendUint16(resp, rtype)
		resp = binary.BigEndian.AppendUint16(resp, classIN)
		resp = binary.BigEndian.AppendUint32(resp, ttl)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
		an++
		return true
	}
	// An alias: the CNAME, then, for a target inside the cluster, what
	// the target resolves to (as a recursive server would); an outside
	// target is left to the client, and this server does not forward.
	for hops := 0; e.cname != ""; hops++ {
		target := e.cname
		start := len(resp) + 12 // where the target's name lands
		if !rr(typeCNAME, appendName(nil, target)) || qtype == typeCNAME || hops == maxCNAMEChain || !s.inDomain(target) || start > 0x3fff {
			e = entry{}
			break
		}
		owner = uint16(start)
		next, rc, _ := s.resolve(target, client)
		if rc != rcodeOK {
			e = entry{}
			break
		}
		e = next
	}
	for _, ip := range e.ips {
		ip = ip.Unmap()
		var rtype uint16
		switch {
		case qtype == typeA && ip.Is4():
			rtype = typeA
		case qtype == typeAAAA && ip.Is6():
			rtype = typeAAAA
		default:
			continue
		}
		if !rr(rtype, ip.AsSlice()) {
			break
		}
	}
	hdr(rcodeOK, true, 1, an, tc)
	return resp
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// ServeUDP answers the queries arriving on pc until ctx is done, then
// closes pc.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	buf := make([]byte, 4096)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dns: read: %w", err)
		}
		if resp := s.Answer(buf[:n], addrOf(from), maxUDP); resp != nil {
			if _, err := pc.WriteTo(resp, from); err != nil {
				s.log.Debug("dns write", "to", from, "err", err)
			}
		}
	}
}

// ServeTCP answers queries on the connections accepted from ln until ctx is
// done, then closes ln.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns: accept: %w", err)
		}
		wg.Go(func() {
			defer c.Close()
			stopConn := context.AfterFunc(ctx, func() { c.Close() })
			defer stopConn()
			for {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				resp := s.Answer(msg, addrOf(c.RemoteAddr()), 65535)
				if resp == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
				if _, err := c.Write(append(out, resp...)); err != nil {
					return
				}
			}
		})
	}
}

// ListenAndServe serves UDP and TCP on addr (host:port) until ctx is done.
// ready, if not nil, gets the bound UDP address once listening.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(net.Addr)) error {
	pc, ln, err := listenPair(addr)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if ready != nil {
		ready(pc.LocalAddr())
	}
	errc := make(chan error, 1)
	go func() { errc <- s.ServeTCP(ctx, ln) }()
	uerr := s.ServeUDP(ctx, pc)
	if uerr != nil {
		ln.Close()
	}
	return errors.Join(uerr, <-errc)
}

// listenPair binds UDP and TCP on one port. With port 0 the kernel picks the
// UDP port, which TCP may already use: then it tries another.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 1; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == 10 {
			return nil, nil, err
		}
	}
}
