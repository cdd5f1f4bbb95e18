package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// SelfSigned returns a PEM certificate and key for names, signed by itself.
func selfSigned(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// echoBackend is an HTTP server on loopback answering "<name> <method>
// <path> host=<Host> xff=<X-Forwarded-For> proto=<X-Forwarded-Proto>
// xfh=<X-Forwarded-Host>".
func echoBackend(t testing.TB, name string) (ip string, port int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s host=%s xff=%s proto=%s xfh=%s", name, r.Method, r.URL.RequestURI(), r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "127.0.0.1", int32(ln.Addr().(*net.TCPAddr).Port)
}

func serve(t testing.TB, s *Server, useTLS bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, useTLS) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// get sends GET path with Host host to addr and returns status and body.
func get(t *testing.T, c *http.Client, scheme, addr, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", scheme+"://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim, not passed on
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s host %s: %v", path, host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestServerRoutesAndErrors proxies to two real HTTP backends by Host,
// with X-Forwarded headers; 404 without a rule, 503 without an endpoint,
// 502 when the endpoint refuses; an Update keeps serving the other host.
func TestServerRoutesAndErrors(t *testing.T) {
	ipA, portA := echoBackend(t, "A")
	ipB, portB := echoBackend(t, "B")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := int32(dead.Addr().(*net.TCPAddr).Port)
	dead.Close()
	objs := Objects{
		Services: map[string]*manifests.Service{
			"default/a":    svc("default", "a", manifests.ServicePort{Name: "http", Port: 80}),
			"default/b":    svc("default", "b", manifests.ServicePort{Port: 80}),
			"default/none": svc("default", "none", manifests.ServicePort{Port: 80}),
			"default/dead": svc("default", "dead", manifests.ServicePort{Port: 80}),
			"default/half": svc("default", "half", manifests.ServicePort{Port: 80}),
		},
		Endpoints: map[string]*manifests.Endpoints{
			"default/a":    eps("default", "a", ipA, manifests.EndpointPort{Name: "http", Port: portA}),
			"default/b":    eps("default", "b", ipB, manifests.EndpointPort{Port: portB}),
			"default/dead": eps("default", "dead", "127.0.0.1", manifests.EndpointPort{Port: deadPort}),
			"default/half": {Subsets: []manifests.EndpointSubset{
				{Addresses: []manifests.EndpointAddress{{IP: "127.0.0.1"}}, Ports: []manifests.EndpointPort{{Port: deadPort}}},
				{Addresses: []manifests.EndpointAddress{{IP: ipB}}, Ports: []manifests.EndpointPort{{Port: portB}}},
			}},
		},
		Ingresses: []*manifests.Ingress{ingress("web", time.Now(), nil,
			rule("a.example.com", manifests.HTTPIngressPath{Path: "/", PathType: manifests.PathTypePrefix,
				Backend: manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: "a", Port: manifests.ServiceBackendPort{Name: "http"}}}}),
			rule("b.example.com", path("/", manifests.PathTypePrefix, "b")),
			rule("none.example.com", path("/", manifests.PathTypePrefix, "none")),
			rule("dead.example.com", path("/", manifests.PathTypePrefix, "dead")),
			rule("half.example.com", path("/", manifests.PathTypePrefix, "half")),
		)},
	}
	tab, err := Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{})
	addr := serve(t, s, false)
	c := &http.Client{Timeout: 5 * time.Second}
	if code, body := get(t, c, "http", addr, "a.example.com", "/"); code != http.StatusNotFound {
		t.Errorf("before the first table: %d %q", code, body)
	}
	s.Update(tab)
	code, body := get(t, c, "http", addr, "a.example.com", "/hello?x=1")
	if want := "A GET /hello?x=1 host=a.example.com xff=127.0.0.1 proto=http xfh=a.example.com"; code != 200 || body != want {
		t.Errorf("host a: %d %q, want %q", code, body, want)
	}
	if code, body := get(t, c, "http", addr, "B.example.com:8080", "/"); code != 200 || !strings.HasPrefix(body, "B GET / host=B.example.com:8080") {
		t.Errorf("host b: %d %q", code, body)
	}
	if code, body := get(t, c, "http", addr, "c.example.com", "/"); code != http.StatusNotFound || !strings.Contains(body, `no ingress rule for host "c.example.com"`) {
		t.Errorf("no rule: %d %q", code, body)
	}
	if code, body := get(t, c, "http", addr, "none.example.com", "/"); code != http.StatusServiceUnavailable || !strings.Contains(body, "service default/none has no ready endpoint") {
		t.Errorf("no endpoint: %d %q", code, body)
	}
	if code, body := get(t, c, "http", addr, "dead.example.com", "/"); code != http.StatusBadGateway || !strings.Contains(body, "502 bad gateway: dial tcp 127.0.0.1:"+strconv.Itoa(int(deadPort))) {
		t.Errorf("refused endpoint: %d %q", code, body)
	}
	// One endpoint of two refuses: every request (GET, no body) is
	// answered by the other.
	for i := range 4 {
		if code, body := get(t, c, "http", addr, "half.example.com", "/"); code != 200 || !strings.HasPrefix(body, "B ") {
			t.Errorf("half dead, request %d: %d %q", i, code, body)
		}
	}

	// Reload without host a: b keeps being served, a gets 404.
	objs.Ingresses[0].Spec.Rules = objs.Ingresses[0].Spec.Rules[1:]
	tab, err = Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(tab)
	if code, _ := get(t, c, "http", addr, "a.example.com", "/"); code != http.StatusNotFound {
		t.Errorf("a after removal: %d", code)
	}
	if code, body := get(t, c, "http", addr, "b.example.com", "/"); code != 200 || !strings.HasPrefix(body, "B ") {
		t.Errorf("b after reload: %d %q", code, body)
	}
}

// TestServerTLSBySNI serves two certificates from kubernetes.io/tls
// Secrets and picks them by SNI; an unknown name gets the first.
func TestServerTLSBySNI(t *testing.T) {
	ipA, portA := echoBackend(t, "A")
	crtA, keyA := selfSigned(t, "a.example.com")
	crtW, keyW := selfSigned(t, "*.wild.example.com")
	objs := Objects{
		Services:  map[string]*manifests.Service{"default/a": svc("default", "a", manifests.ServicePort{Port: 80})},
		Endpoints: map[string]*manifests.Endpoints{"default/a": eps("default", "a", ipA, manifests.EndpointPort{Port: portA})},
		Secrets: map[string]*manifests.Secret{
			"default/a-tls":    {Type: "kubernetes.io/tls", Data: map[string][]byte{"tls.crt": crtA, "tls.key": keyA}},
			"default/wild-tls": {Type: "kubernetes.io/tls", Data: map[string][]byte{"tls.crt": crtW, "tls.key": keyW}},
			"default/bad":      {Type: "Opaque", Data: map[string][]byte{"tls.crt": []byte("x")}},
		},
	}
	ing := ingress("tls", time.Now(), nil, rule("a.example.com", path("/", manifests.PathTypePrefix, "a")),
		rule("*.wild.example.com", path("/", manifests.PathTypePrefix, "a")))
	ing.Spec.TLS = []manifests.IngressTLS{
		{Hosts: []string{"a.example.com"}, SecretName: "a-tls"},
		{Hosts: []string{"*.wild.example.com"}, SecretName: "wild-tls"},
		{Hosts: []string{"bad.example.com"}, SecretName: "bad"},
		{Hosts: []string{"gone.example.com"}, SecretName: "gone"},
	}
	objs.Ingresses = []*manifests.Ingress{ing}
	tab, err := Build(objs)
	if err == nil || !strings.Contains(err.Error(), "spec.tls[2]: secret default/bad: needs tls.crt and tls.key") ||
		!strings.Contains(err.Error(), "spec.tls[3]: secret default/gone not found") {
		t.Errorf("build errors: %v", err)
	}
	s := New(Config{})
	s.Update(tab)
	addr := serve(t, s, true)
	for _, tc := range []struct {
		sni      string
		wantCert []byte
	}{{"a.example.com", crtA}, {"x.wild.example.com", crtW}, {"unknown.example.com", crtA}} {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(tc.wantCert)
		host := tc.sni
		if host == "unknown.example.com" {
			host = "a.example.com" // the default certificate is a's
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: tc.sni, VerifyConnection: func(cs tls.ConnectionState) error {
					// Verified against host (the default certificate's name)
					// while the SNI sent is tc.sni.
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: host})
					return err
				}, InsecureSkipVerify: true}}
				return d.DialContext(ctx, network, addr)
			},
		}}
		code, body := get(t, c, "https", tc.sni, host, "/p")
		if code != 200 || !strings.HasPrefix(body, "A GET /p host="+host) || !strings.Contains(body, "proto=https") {
			t.Errorf("SNI %s: %d %q", tc.sni, code, body)
		}
	}
}
