package ingress

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// BenchmarkIngressProxy: one small GET over a kept-alive connection,
// straight to the backend and through the proxy (loopback).
func BenchmarkIngressProxy(b *testing.B) {
	ip, port := echoBackend(b, "A")
	tab, err := Build(Objects{
		Services:  map[string]*manifests.Service{"default/a": svc("default", "a", manifests.ServicePort{Port: 80})},
		Endpoints: map[string]*manifests.Endpoints{"default/a": eps("default", "a", ip, manifests.EndpointPort{Port: port})},
		Ingresses: []*manifests.Ingress{ingress("a", time.Now(), nil, rule("a.example.com", path("/", manifests.PathTypePrefix, "a")))},
	})
	if err != nil {
		b.Fatal(err)
	}
	s := New(Config{})
	s.Update(tab)
	proxyAddr := serve(b, s, false)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, bc := range []struct{ name, addr string }{{"direct", net.JoinHostPort(ip, strconv.Itoa(int(port)))}, {"proxy", proxyAddr}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest("GET", "http://"+bc.addr+"/x", nil)
				req.Host = "a.example.com"
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
