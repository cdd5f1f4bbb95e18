package edgeagent

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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
	"github.com/nats-io/nats.go"
)

// tlsSecret returns a kubernetes.io/tls Secret holding a self-signed
// certificate for host, and the certificate (PEM).
func tlsSecret(t *testing.T, name, host string) (*manifests.Secret, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	s := &manifests.Secret{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}, Type: "kubernetes.io/tls",
		Data: map[string][]byte{"tls.crt": crt, "tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})}}
	return s, crt
}

// httpBackend serves "<name> <path> host=<Host> xff=<X-Forwarded-For>"
// on loopback: a pod's HTTP server, wired as an endpoint.
func httpBackend(t *testing.T, name string) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s host=%s xff=%s proto=%s", name, r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// TestIngressRoutesTwoHostsToTwoServices is the check: an Ingress
// (applied through the API, with a TLS Secret) routes two hosts to two
// Services; the agent's proxy finds the Services' endpoints, serves HTTPS
// with the Secret's certificate by SNI (the node reading the Secret
// through its node-scoped API), answers 404 and 503, and follows
// Endpoints and Ingress changes without dropping the other host.
func TestIngressRoutesTwoHostsToTwoServices(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	apply := func(obj manifests.Object) {
		t.Helper()
		if err := manifests.SetKind(obj); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cp.cl.Apply(ctx, obj); err != nil {
			t.Fatalf("apply %s: %v", obj.GetObjectMeta().Name, err)
		}
	}
	for _, name := range []string{"svc-a", "svc-b", "svc-idle"} {
		apply(&manifests.Service{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
			Spec: manifests.ServiceSpec{Ports: []manifests.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}}}})
	}
	endpoints := func(name string, port int32) *manifests.Endpoints {
		return &manifests.Endpoints{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
			Subsets: []manifests.EndpointSubset{{
				Addresses: []manifests.EndpointAddress{{IP: "127.0.0.1"}},
				Ports:     []manifests.EndpointPort{{Name: "http", Port: port, Protocol: "TCP"}},
			}}}
	}
	apply(endpoints("svc-a", httpBackend(t, "A")))
	apply(endpoints("svc-b", httpBackend(t, "B")))
	secret, crt := tlsSecret(t, "a-tls", "a.example.com")
	apply(secret)
	backend := func(svc string) manifests.IngressBackend {
		return manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: svc, Port: manifests.ServiceBackendPort{Name: "http"}}}
	}
	rule := func(host, svc string) manifests.IngressRule {
		return manifests.IngressRule{Host: host, HTTP: &manifests.HTTPIngressRuleValue{Paths: []manifests.HTTPIngressPath{
			{Path: "/", PathType: manifests.PathTypePrefix, Backend: backend(svc)}}}}
	}
	ing := &manifests.Ingress{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: manifests.IngressSpec{
			TLS:   []manifests.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "a-tls"}},
			Rules: []manifests.IngressRule{rule("a.example.com", "svc-a"), rule("b.example.com", "svc-b"), rule("idle.example.com", "svc-idle")},
		}}
	apply(ing)

	nc, err := nats.Connect(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	addrs := map[bool]string{}
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(actx, nc, Config{
			NodeName: "node-ing", DataDir: t.TempDir(), Address: "127.0.0.1",
			HeartbeatInterval: 200 * time.Millisecond,
			Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			IngressHTTPAddr:   "127.0.0.1:0", IngressHTTPSAddr: "127.0.0.1:0",
			IngressReady: func(addr string, useTLS bool) {
				mu.Lock()
				addrs[useTLS] = addr
				mu.Unlock()
			},
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	var httpAddr, httpsAddr string
	eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		httpAddr, httpsAddr = addrs[false], addrs[true]
		if httpAddr == "" || httpsAddr == "" {
			return fmt.Errorf("listeners: %v", addrs)
		}
		return nil
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	plain := &http.Client{Timeout: 3 * time.Second}
	secure := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, // verifies a.example.com by SNI
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, httpsAddr)
		},
	}}
	get := func(c *http.Client, url, host string) (int, string, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return 0, "", err
		}
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	expect := func(c *http.Client, url, host string, code int, prefix string) func() error {
		return func() error {
			gotCode, body, err := get(c, url, host)
			if err != nil {
				return err
			}
			if gotCode != code || !strings.HasPrefix(body, prefix) {
				return fmt.Errorf("%s host %s: %d %q, want %d %q", url, host, gotCode, body, code, prefix)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, expect(plain, "http://"+httpAddr+"/x", "a.example.com", 200, "A /x host=a.example.com xff=127.0.0.1 proto=http"))
	eventually(t, 10*time.Second, expect(plain, "http://"+httpAddr+"/y", "b.example.com", 200, "B /y host=b.example.com xff=127.0.0.1 proto=http"))
	// HTTPS: the certificate of the Secret, verified for a.example.com.
	eventually(t, 10*time.Second, expect(secure, "https://a.example.com/s", "a.example.com", 200, "A /s host=a.example.com xff=127.0.0.1 proto=https"))
	if err := expect(plain, "http://"+httpAddr+"/", "c.example.com", 404, "404 not found")(); err != nil {
		t.Error(err)
	}
	if err := expect(plain, "http://"+httpAddr+"/", "idle.example.com", 503, "503 service unavailable: service default/svc-idle has no ready endpoint")(); err != nil {
		t.Error(err)
	}

	// Endpoints change: b loses its endpoint (503), a keeps working.
	apply(&manifests.Endpoints{ObjectMeta: manifests.ObjectMeta{Name: "svc-b", Namespace: "default"}})
	eventually(t, 10*time.Second, expect(plain, "http://"+httpAddr+"/", "b.example.com", 503, "503"))
	if err := expect(plain, "http://"+httpAddr+"/", "a.example.com", 200, "A /")(); err != nil {
		t.Error(err)
	}
	// Ingress change: host b goes to svc-a, and the renewed certificate
	// (the Secret was updated first) is read again; then the Ingress is
	// deleted.
	renewed, crt2 := tlsSecret(t, "a-tls", "a.example.com")
	apply(renewed)
	stored, err := cp.cl.Get(ctx, "ingresses", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	ing = stored.(*manifests.Ingress)
	ing.Spec.Rules[1] = rule("b.example.com", "svc-a")
	apply(ing)
	eventually(t, 10*time.Second, expect(plain, "http://"+httpAddr+"/", "b.example.com", 200, "A / host=b.example.com"))
	pool2 := x509.NewCertPool()
	pool2.AppendCertsFromPEM(crt2)
	secure.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool2}
	secure.Transport.(*http.Transport).CloseIdleConnections()
	eventually(t, 10*time.Second, expect(secure, "https://a.example.com/r", "a.example.com", 200, "A /r"))
	if _, err := cp.cl.Delete(ctx, "ingresses", "default", "web"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, expect(plain, "http://"+httpAddr+"/", "a.example.com", 404, "404"))
}

// TestIngressToWasmPod routes a host to a Service whose endpoint is a real
// wasm pod (the httpd test module) run by the same agent.
func TestIngressToWasmPod(t *testing.T) {
	cp := startControlPlane(t)
	ctx := ctxT(t)
	f, err := os.Open(testmodules.Path(t, "httpd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := cp.cl.PushModule(ctx, "httpd:v1", f); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	actx, cancel := context.WithCancel(context.Background())
	rt, err := wasm.New(actx, wasm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cp.url)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(actx, nc, Config{
			NodeName: "node-1", DataDir: t.TempDir(), Address: "127.0.0.1",
			HeartbeatInterval: 200 * time.Millisecond, Runtimes: map[string]runtime.Runtime{"wasm": rt},
			BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			IngressHTTPAddr: "127.0.0.1:0",
			IngressReady:    func(addr string, _ bool) { httpAddr <- addr },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		rt.Close(context.Background())
	})

	pod := handlerPod("web", manifests.RuntimeWasm, "httpd:v1")
	c := &pod.Spec.Containers[0]
	c.Env = []manifests.EnvVar{{Name: "GREETING", Value: "pod"}}
	c.Ports = []manifests.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
	cp.assign(t, pod)
	// No endpoints controller here: the Service has no selector and its
	// Endpoints name the pod's address (host network: 127.0.0.1).
	svc := &manifests.Service{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: manifests.ObjectMeta{Name: "wasm-web", Namespace: "default"},
		Spec:       manifests.ServiceSpec{Ports: []manifests.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}}}}
	ep := &manifests.Endpoints{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Endpoints"},
		ObjectMeta: manifests.ObjectMeta{Name: "wasm-web", Namespace: "default"},
		Subsets: []manifests.EndpointSubset{{Addresses: []manifests.EndpointAddress{{IP: "127.0.0.1"}},
			Ports: []manifests.EndpointPort{{Name: "http", Port: int32(port), Protocol: "TCP"}}}}}
	ing := &manifests.Ingress{TypeMeta: manifests.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: manifests.ObjectMeta{Name: "wasm", Namespace: "default"},
		Spec: manifests.IngressSpec{Rules: []manifests.IngressRule{{Host: "w.example.com", HTTP: &manifests.HTTPIngressRuleValue{
			Paths: []manifests.HTTPIngressPath{{Path: "/", PathType: manifests.PathTypePrefix, Backend: manifests.IngressBackend{
				Service: &manifests.IngressServiceBackend{Name: "wasm-web", Port: manifests.ServiceBackendPort{Number: 80}}}}}}}}}}
	for _, o := range []manifests.Object{svc, ep, ing} {
		if _, _, err := cp.cl.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	var addr string
	select {
	case addr = <-httpAddr:
	case <-time.After(10 * time.Second):
		t.Fatal("ingress proxy not listening")
	}
	eventually(t, 20*time.Second, func() error {
		req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		req.Host = "w.example.com"
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "hello from wasm pod\n" {
			return fmt.Errorf("%d %q", resp.StatusCode, body)
		}
		return nil
	})
}
