package proxy

import (
	"io"
	"net"
	"strconv"
	"testing"
)

// benchServer serves on loopback: "echo" echoes, "sink" discards and
// answers one byte when the client half-closes.
func benchServer(b *testing.B, mode string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if mode == "echo" {
					io.Copy(c, c)
					return
				}
				io.Copy(io.Discard, c)
				c.Write([]byte{1})
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkProxyTCP compares a direct loopback connection with one through
// the proxy: throughput (MB/s, 1 MiB per op) and request/response round
// trip of one byte (µs per op).
func BenchmarkProxyTCP(b *testing.B) {
	echo := benchServer(b, "echo")
	sink := benchServer(b, "sink")
	p := New(Config{})
	b.Cleanup(func() { p.Close() })
	// ClusterIPs on loopback: no address management needed.
	svc := func(name, ip string, port int) (Service, Endpoints) {
		return Service{Namespace: "b", Name: name, ClusterIP: ip, Ports: []ServicePort{{Port: 80}}},
			Endpoints{Namespace: "b", Name: name, Subsets: []Subset{{Addresses: []string{"127.0.0.1"}, Ports: []EndpointPort{{Port: port}}}}}
	}
	s1, e1 := svc("echo", "127.0.0.2", echo)
	s2, e2 := svc("sink", "127.0.0.3", sink)
	if err := p.Update(Snapshot{Services: []Service{s1, s2}, Endpoints: []Endpoints{e1, e2}}); err != nil {
		b.Fatal(err)
	}
	targets := []struct{ name, echo, sink string }{
		{"direct", "127.0.0.1:" + strconv.Itoa(echo), "127.0.0.1:" + strconv.Itoa(sink)},
		{"proxy", "127.0.0.2:80", "127.0.0.3:80"},
	}
	for _, tg := range targets {
		b.Run("throughput/"+tg.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tg.sink)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadFull(c, buf[:1]); err != nil {
				b.Fatal(err)
			}
		})
		b.Run("rtt/"+tg.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tg.echo)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := []byte{42}
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/rtt")
		})
	}
}
