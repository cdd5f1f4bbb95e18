package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Addresses manages the local addresses the ClusterIPs are bound to.
type Addresses interface {
	Add(ip netip.Addr) error
	Del(ip netip.Addr) error
	Close() error
}

// Config configures a Proxy. Zero fields get defaults.
type Config struct {
	// NodeAddress is where NodePort listeners bind ("0.0.0.0").
	NodeAddress string
	// Addresses holds the ClusterIPs; nil means ClusterIP listeners are
	// bound without adding any address (tests on loopback).
	Addresses Addresses
	// Listen and ListenPacket create the listeners (net.Listen and
	// net.ListenPacket); Dial connects to a backend (net.Dialer).
	Listen       func(network, addr string) (net.Listener, error)
	ListenPacket func(network, addr string) (net.PacketConn, error)
	Dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds one backend dial (2s); UDPIdleTimeout ends a UDP
	// client session without traffic (30s).
	DialTimeout    time.Duration
	UDPIdleTimeout time.Duration
	Logger         *slog.Logger
}

// Proxy serves a Snapshot. Update reconciles the listeners.
type Proxy struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	listeners map[string]*listener // by proto/ip:port
	ips       map[netip.Addr]bool  // ClusterIPs added
	closed    bool
	wg        sync.WaitGroup
}

// New returns a Proxy with no listeners.
func New(cfg Config) *Proxy {
	if cfg.NodeAddress == "" {
		cfg.NodeAddress = "0.0.0.0"
	}
	if cfg.Listen == nil {
		cfg.Listen = net.Listen
	}
	if cfg.ListenPacket == nil {
		cfg.ListenPacket = net.ListenPacket
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.UDPIdleTimeout <= 0 {
		cfg.UDPIdleTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Proxy{cfg: cfg, log: cfg.Logger, listeners: map[string]*listener{}, ips: map[netip.Addr]bool{}}
}

// backends is the list of ready endpoints of a listener, swapped as a whole.
type backends struct {
	addrs []string
}

type listener struct {
	key, proto, addr string
	svc              string // namespace/name:port for logs
	be               atomic.Pointer[backends]
	next             atomic.Uint64
	ln               net.Listener   // TCP
	pc               net.PacketConn // UDP
	done             chan struct{}
}

// pick returns the backends in the order to try them: round robin start.
func (l *listener) pick() []string {
	b := l.be.Load()
	if b == nil || len(b.addrs) == 0 {
		return nil
	}
	n := len(b.addrs)
	start := int(l.next.Add(1)-1) % n
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, b.addrs[(start+i)%n])
	}
	return out
}

type want struct {
	proto, addr, svc string
	clusterIP        netip.Addr // valid for ClusterIP listeners
	backends         []string
}

func desired(snap Snapshot, nodeAddr string) map[string]want {
	out := map[string]want{}
	for _, s := range snap.Services {
		ep := snap.Lookup(s.Namespace, s.Name)
		var cip netip.Addr
		if !s.Headless() {
			ip, err := netip.ParseAddr(s.ClusterIP)
			if err != nil {
				continue
			}
			cip = ip
		}
		for _, sp := range s.Ports {
			proto := protocol(sp.Protocol)
			if proto != "TCP" && proto != "UDP" {
				continue
			}
			be := ep.Backends(sp)
			name := fmt.Sprintf("%s/%s:%d", s.Namespace, s.Name, sp.Port)
			if cip.IsValid() && sp.Port > 0 {
				addr := net.JoinHostPort(cip.String(), strconv.Itoa(sp.Port))
				out[proto+"/"+addr] = want{proto: proto, addr: addr, svc: name, clusterIP: cip, backends: be}
			}
			if s.Type == TypeNodePort && sp.NodePort > 0 {
				addr := net.JoinHostPort(nodeAddr, strconv.Itoa(sp.NodePort))
				out[proto+"/"+addr] = want{proto: proto, addr: addr, svc: name, backends: be}
			}
		}
	}
	return out
}

// Update makes the listeners match snap. Existing connections are kept; a
// listener whose service port remains only gets its new endpoints. Errors
// of single listeners are joined; the others are still reconciled.
func (p *Proxy) Update(snap Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy closed")
	}
	want := desired(snap, p.cfg.NodeAddress)
	var errs []error
	for key, l := range p.listeners {
		if _, ok := want[key]; !ok {
			l.close()
			delete(p.listeners, key)
		}
	}
	needIPs := map[netip.Addr]bool{}
	for _, w := range want {
		if w.clusterIP.IsValid() {
			needIPs[w.clusterIP] = true
		}
	}
	if p.cfg.Addresses != nil {
		for ip := range p.ips {
			if !needIPs[ip] {
				if err := p.cfg.Addresses.Del(ip); err != nil {
					errs = append(errs, err)
				}
				delete(p.ips, ip)
			}
		}
	}
	for key, w := range want {
		if l, ok := p.listeners[key]; ok {
			l.be.Store(&backends{addrs: w.backends})
			continue
		}
		if w.clusterIP.IsValid() && p.cfg.Addresses != nil && !p.ips[w.clusterIP] {
			if err := p.cfg.Addresses.Add(w.clusterIP); err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", w.svc, err))
				continue
			}
			p.ips[w.clusterIP] = true
		}
		l, err := p.start(w)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", w.svc, err))
			continue
		}
		p.listeners[key] = l
	}
	return errors.Join(errs...)
}

func (p *Proxy) start(w want) (*listener, error) {
	l := &listener{key: w.proto + "/" + w.addr, proto: w.proto, addr: w.addr, svc: w.svc, done: make(chan struct{})}
	l.be.Store(&backends{addrs: w.backends})
	switch w.proto {
	case "TCP":
		ln, err := p.cfg.Listen("tcp", w.addr)
		if err != nil {
			return nil, fmt.Errorf("listen tcp %s: %w", w.addr, err)
		}
		l.ln = ln
		p.wg.Go(func() { p.serveTCP(l) })
	case "UDP":
		pc, err := p.cfg.ListenPacket("udp", w.addr)
		if err != nil {
			return nil, fmt.Errorf("listen udp %s: %w", w.addr, err)
		}
		l.pc = pc
		p.wg.Go(func() { p.serveUDP(l) })
	}
	p.log.Debug("proxy listening", "service", w.svc, "proto", w.proto, "addr", w.addr)
	return l, nil
}

func (l *listener) close() {
	close(l.done)
	if l.ln != nil {
		l.ln.Close()
	}
	if l.pc != nil {
		l.pc.Close()
	}
}

// Close stops all listeners and removes the ClusterIP addresses. Proxied
// connections are closed by their peers.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for key, l := range p.listeners {
		l.close()
		delete(p.listeners, key)
	}
	var errs []error
	if p.cfg.Addresses != nil {
		for ip := range p.ips {
			if err := p.cfg.Addresses.Del(ip); err != nil {
				errs = append(errs, err)
			}
		}
		p.ips = map[netip.Addr]bool{}
		errs = append(errs, p.cfg.Addresses.Close())
	}
	p.mu.Unlock()
	p.wg.Wait()
	return errors.Join(errs...)
}

func (p *Proxy) serveTCP(l *listener) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Warn("proxy accept", "service", l.svc, "err", err)
			return
		}
		go p.handleTCP(l, c)
	}
}

// dial connects to the first backend that answers, starting round robin.
func (p *Proxy) dial(l *listener, network string) (net.Conn, error) {
	addrs := l.pick()
	if len(addrs) == 0 {
		return nil, fmt.Errorf("service %s: no ready endpoints", l.svc)
	}
	var errs []error
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
		c, err := p.cfg.Dial(ctx, network, a)
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("service %s: %w", l.svc, errors.Join(errs...))
}

func (p *Proxy) handleTCP(l *listener, in net.Conn) {
	defer in.Close()
	out, err := p.dial(l, "tcp")
	if err != nil {
		p.log.Warn("proxy dial", "err", err)
		return
	}
	defer out.Close()
	var wg sync.WaitGroup
	wg.Go(func() { splice(out, in) })
	splice(in, out)
	wg.Wait()
}

// splice copies src to dst, then half-closes dst for writing (or closes it).
func splice(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}

type udpSession struct {
	conn net.Conn
	last atomic.Int64 // unix nanos of the last packet
}

func (p *Proxy) serveUDP(l *listener) {
	var mu sync.Mutex
	sessions := map[string]*udpSession{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, s := range sessions {
			s.conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	buf := make([]byte, 64*1024)
	for {
		n, from, err := l.pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Warn("proxy udp read", "service", l.svc, "err", err)
			return
		}
		key := from.String()
		// Looked up and marked used under mu: a session ends only under mu
		// too, after checking it is still idle, so a packet never goes to a
		// session that is closing.
		mu.Lock()
		s := sessions[key]
		if s != nil {
			s.last.Store(time.Now().UnixNano())
		}
		mu.Unlock()
		if s == nil {
			c, err := p.dial(l, "udp")
			if err != nil {
				p.log.Warn("proxy dial", "err", err)
				continue
			}
			s = &udpSession{conn: c}
			mu.Lock()
			sessions[key] = s
			mu.Unlock()
			s.last.Store(time.Now().UnixNano())
			wg.Go(func() {
				p.udpReplies(l, s, from, func() bool {
					mu.Lock()
					defer mu.Unlock()
					if p.idle(s) {
						if sessions[key] == s {
							delete(sessions, key)
						}
						return true
					}
					return false
				})
				mu.Lock()
				if sessions[key] == s {
					delete(sessions, key)
				}
				mu.Unlock()
			})
		}
		if _, err := s.conn.Write(buf[:n]); err != nil {
			p.log.Debug("proxy udp write", "service", l.svc, "err", err)
		}
	}
}

// udpReplies sends the backend's replies to the client until the session
// has been idle for UDPIdleTimeout; expire ends it only if it still is idle
// (and takes it out of the sessions) when asked under the listener's lock.
func (p *Proxy) udpReplies(l *listener, s *udpSession, client net.Addr, expire func() bool) {
	defer s.conn.Close()
	buf := make([]byte, 64*1024)
	for {
		deadline := time.Unix(0, s.last.Load()).Add(p.cfg.UDPIdleTimeout)
		s.conn.SetReadDeadline(deadline)
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.done:
				return
			default:
			}
			// A timeout, or an error such as connection refused: the
			// session lasts until it has been idle long enough.
			if !p.idle(s) || !expire() {
				continue
			}
			return
		}
		if _, err := l.pc.WriteTo(buf[:n], client); err != nil {
			select {
			case <-l.done:
				return
			default:
			}
		}
	}
}

// idle reports whether s has carried no client packet for UDPIdleTimeout.
func (p *Proxy) idle(s *udpSession) bool {
	return !time.Unix(0, s.last.Load()).Add(p.cfg.UDPIdleTimeout).After(time.Now())
}
