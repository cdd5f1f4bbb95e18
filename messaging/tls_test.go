package messaging

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startTLSServer runs an embedded server with st on a random port.
func startTLSServer(t *testing.T, st *ServerTLS) *server.Server {
	t.Helper()
	ns, err := StartServer(ServerConfig{DataDir: t.TempDir(), Port: -1, TLS: st.Config, TLSVerify: st.Verify})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// dial connects once (no retries) with opts.
func dial(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// roundTrip proves the connection works: a request answered by a
// subscriber on the same connection.
func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.Subscribe("tls.echo", func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	msg, err := nc.Request("tls.echo", []byte("ping"), 5*time.Second)
	if err != nil || string(msg.Data) != "ping" {
		t.Fatalf("request over TLS: %v, %v", msg, err)
	}
}

func TestTLSGeneratedCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	st, err := NewServerTLS(TLSOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if st.CAFile != filepath.Join(dir, CAFileName) || st.Files == nil || !st.Files.CACreated || !st.Files.Issued {
		t.Fatalf("server TLS = %+v, files %+v", st, st.Files)
	}
	ns := startTLSServer(t, st)
	url := ns.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("client URL %q: want tls://", url)
	}

	t.Run("client with the CA", func(t *testing.T) {
		opts, err := ClientTLS(st.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{url, strings.Replace(url, "tls://", "nats://", 1)} {
			nc, err := dial(t, u, opts...)
			if err != nil {
				t.Fatalf("connect to %s with the CA: %v", u, err)
			}
			if !nc.TLSRequired() {
				t.Errorf("%s: connection not TLS", u)
			}
			if cs, err := nc.TLSConnectionState(); err != nil || !cs.HandshakeComplete {
				t.Errorf("%s: TLS state %v, %v", u, cs.HandshakeComplete, err)
			}
			roundTrip(t, nc)
		}
	})

	t.Run("client without the CA is refused", func(t *testing.T) {
		for _, u := range []string{url, strings.Replace(url, "tls://", "nats://", 1)} {
			_, err := dial(t, u)
			if err == nil {
				t.Fatalf("connect to %s without the CA: want an error", u)
			}
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Errorf("error %v: want an unknown authority error", err)
			}
			hint := TLSHint(err, "--tls-ca FILE")
			if !strings.Contains(hint, "--tls-ca FILE") || !strings.Contains(hint, "ca.pem") {
				t.Errorf("hint %q: want the flag and ca.pem named", hint)
			}
		}
	})

	t.Run("client with another CA is refused", func(t *testing.T) {
		other, err := EnsureCerts(CertOptions{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		opts, err := ClientTLS(other.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dial(t, url, opts...); err == nil || TLSHint(err, "--tls-ca") == "" {
			t.Fatalf("connect with another CA: %v; want an error with a hint", err)
		}
	})

	t.Run("wrong address is refused", func(t *testing.T) {
		// Verify the server as a name its certificate does not list.
		opts, err := ClientTLS(st.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, func(o *nats.Options) error {
			o.TLSConfig.ServerName = "not-listed.example"
			return nil
		})
		_, err = dial(t, url, opts...)
		var host x509.HostnameError
		if !errors.As(err, &host) || !strings.Contains(TLSHint(err, "--tls-ca"), "--tls-san") {
			t.Fatalf("connect by an unlisted name: %v; want a hostname error with a --tls-san hint", err)
		}
	})

	t.Run("plaintext client is refused", func(t *testing.T) {
		addr := strings.TrimPrefix(url, "tls://")
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		info, err := r.ReadString('\n')
		if err != nil || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("INFO %q, %v: want tls_required", info, err)
		}
		if _, err := io.WriteString(conn, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n"); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server kept the plaintext connection open: %q", rest)
		}
		if bytes.Contains(rest, []byte("PONG")) {
			t.Fatalf("plaintext client got an answer: %q", rest)
		}
	})

	t.Run("client wanting TLS from a plaintext server", func(t *testing.T) {
		plain, err := StartServer(ServerConfig{DataDir: t.TempDir(), Port: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { plain.Shutdown(); plain.WaitForShutdown() }()
		opts, err := ClientTLS(st.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = dial(t, plain.ClientURL(), opts...)
		if !errors.Is(err, nats.ErrSecureConnWanted) || !strings.Contains(TLSHint(err, "--tls-ca"), "--dev") {
			t.Fatalf("connect with a CA to a plaintext server: %v; want ErrSecureConnWanted with a hint", err)
		}
	})
}

func TestTLSCertsPersistAndRenew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	clock := func() time.Time { return now }
	first, err := EnsureCerts(CertOptions{Dir: dir, Hosts: []string{"edge.example", "10.1.2.3"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !first.CACreated || !first.Issued {
		t.Fatalf("first start: %+v; want a new CA and certificate", first)
	}
	for _, f := range []string{first.CAKeyFile, first.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	ca := readFile(t, first.CAFile)
	cert := readFile(t, first.CertFile)
	leaf := parseCert(t, cert)
	for _, want := range []string{"localhost", "edge.example"} {
		if !containsStr(leaf.DNSNames, want) {
			t.Errorf("DNS names %v: want %s", leaf.DNSNames, want)
		}
	}
	for _, want := range []string{"127.0.0.1", "::1", "10.1.2.3"} {
		if err := leaf.VerifyHostname(want); err != nil {
			t.Errorf("certificate not valid for %s: %v", want, err)
		}
	}
	caLeaf := parseCert(t, ca)
	if !caLeaf.IsCA || caLeaf.NotAfter.Sub(now) < 9*365*24*time.Hour {
		t.Errorf("CA: IsCA %v, expires %v; want a CA for 10 years", caLeaf.IsCA, caLeaf.NotAfter)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(caLeaf), DNSName: "edge.example", CurrentTime: now}); err != nil {
		t.Errorf("server certificate does not verify against the CA: %v", err)
	}

	// Restart: everything reused.
	again, err := EnsureCerts(CertOptions{Dir: dir, Hosts: []string{"10.1.2.3", "EDGE.example"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if again.CACreated || again.Issued || !bytes.Equal(readFile(t, first.CAFile), ca) || !bytes.Equal(readFile(t, first.CertFile), cert) {
		t.Fatalf("restart: %+v; want the CA and certificate reused", again)
	}

	// Names change: new certificate, same CA.
	named, err := EnsureCerts(CertOptions{Dir: dir, Hosts: []string{"edge.example", "10.1.2.4"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if named.CACreated || !named.Issued || parseCert(t, readFile(t, named.CertFile)).VerifyHostname("10.1.2.4") != nil {
		t.Fatalf("names changed: %+v; want a new certificate for 10.1.2.4 from the same CA", named)
	}

	// A year later the certificate has expired: renewed, same CA.
	now = now.Add(ServerValidity + time.Hour)
	renewed, err := EnsureCerts(CertOptions{Dir: dir, Hosts: []string{"edge.example", "10.1.2.4"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	newLeaf := parseCert(t, readFile(t, renewed.CertFile))
	if renewed.CACreated || !renewed.Issued || !newLeaf.NotAfter.After(now) || !bytes.Equal(readFile(t, renewed.CAFile), ca) {
		t.Fatalf("expired certificate: %+v (expires %v); want renewed by the same CA", renewed, newLeaf.NotAfter)
	}
	if _, err := newLeaf.Verify(x509.VerifyOptions{Roots: pool(caLeaf), DNSName: "edge.example", CurrentTime: now}); err != nil {
		t.Errorf("renewed certificate does not verify against the CA: %v", err)
	}

	// A lost CA key: new CA, new certificate.
	if err := os.Remove(renewed.CAKeyFile); err != nil {
		t.Fatal(err)
	}
	lost, err := EnsureCerts(CertOptions{Dir: dir, Hosts: []string{"edge.example", "10.1.2.4"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !lost.CACreated || !lost.Issued || bytes.Equal(readFile(t, lost.CAFile), ca) {
		t.Fatalf("lost CA key: %+v; want a new CA and certificate", lost)
	}

	// Bad names: an error naming the value, nothing written.
	bad := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureCerts(CertOptions{Dir: bad, Hosts: []string{"bad name!"}}); err == nil || !strings.Contains(err.Error(), "bad name!") {
		t.Fatalf("bad SAN: %v; want an error naming it", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("bad SAN: %s created (%v)", bad, err)
	}
}

func TestTLSRenewWhileRunning(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st, err := NewServerTLS(TLSOptions{Dir: dir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{}
	c1, err := st.Config.GetCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := st.Config.GetCertificate(hello)
	if c1 != c2 {
		t.Fatal("certificate replaced without need")
	}
	mu.Lock()
	now = now.Add(ServerValidity - RenewBefore + time.Hour)
	mu.Unlock()
	c3, err := st.Config.GetCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	if !c3.Leaf.NotAfter.After(c1.Leaf.NotAfter) {
		t.Fatalf("near expiry: serving a certificate expiring %v; want one renewed after %v", c3.Leaf.NotAfter, c1.Leaf.NotAfter)
	}
	onDisk := parseCert(t, readFile(t, filepath.Join(dir, ServerCertFileName)))
	if !onDisk.NotAfter.Equal(c3.Leaf.NotAfter) {
		t.Errorf("renewed certificate not persisted: disk expires %v, served %v", onDisk.NotAfter, c3.Leaf.NotAfter)
	}
}

func TestTLSUserSuppliedCert(t *testing.T) {
	// The user's own PKI: a CA and a server certificate made elsewhere.
	pki, err := EnsureCerts(CertOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	serverDir := t.TempDir()
	st, err := NewServerTLS(TLSOptions{Dir: serverDir, CertFile: pki.CertFile, KeyFile: pki.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if st.CAFile != "" || st.Files != nil || st.Verify {
		t.Fatalf("user-supplied: %+v; want no generated CA", st)
	}
	if entries, _ := os.ReadDir(serverDir); len(entries) != 0 {
		t.Errorf("user-supplied certificate: %d files generated in %s", len(entries), serverDir)
	}
	ns := startTLSServer(t, st)
	opts, err := ClientTLS(pki.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dial(t, ns.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect with the user's CA: %v", err)
	}
	roundTrip(t, nc)

	t.Run("client certificates required", func(t *testing.T) {
		st, err := NewServerTLS(TLSOptions{CertFile: pki.CertFile, KeyFile: pki.KeyFile, ClientCAFile: pki.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		if !st.Verify {
			t.Fatal("want client certificates required")
		}
		ns := startTLSServer(t, st)
		opts, err := ClientTLS(pki.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dial(t, ns.ClientURL(), opts...); err == nil {
			t.Fatal("client without a certificate connected")
		}
		certFile, keyFile := clientCert(t, pki)
		opts, err = ClientTLS(pki.CAFile, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := dial(t, ns.ClientURL(), opts...)
		if err != nil {
			t.Fatalf("client with a certificate: %v", err)
		}
		roundTrip(t, nc)
		// The control plane's own connection is in process: no
		// certificate needed.
		ip, err := dial(t, "", nats.InProcessServer(ns))
		if err != nil {
			t.Fatalf("in-process connection: %v", err)
		}
		roundTrip(t, ip)
	})

	t.Run("bad input", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing.pem")
		for name, o := range map[string]TLSOptions{
			"cert without key":  {CertFile: pki.CertFile},
			"key without cert":  {KeyFile: pki.KeyFile},
			"missing cert":      {CertFile: missing, KeyFile: pki.KeyFile},
			"mismatched pair":   {CertFile: pki.CertFile, KeyFile: pki.CAKeyFile},
			"missing client CA": {CertFile: pki.CertFile, KeyFile: pki.KeyFile, ClientCAFile: missing},
			"client CA not PEM": {CertFile: pki.CertFile, KeyFile: pki.KeyFile, ClientCAFile: pki.KeyFile},
		} {
			if _, err := NewServerTLS(o); err == nil || !strings.Contains(err.Error(), "--tls-") {
				t.Errorf("%s: %v; want an error naming the flag", name, err)
			}
		}
		if _, err := ClientTLS(missing, "", ""); err == nil {
			t.Error("client with a missing CA file: want an error")
		}
		if _, err := ClientTLS(pki.KeyFile, "", ""); err == nil {
			t.Error("client with a CA file holding no certificate: want an error")
		}
		if _, err := ClientTLS("", pki.CertFile, ""); err == nil {
			t.Error("client certificate without key: want an error")
		}
	})
}

// clientCert issues a client certificate from the CA of pki.
func clientCert(t *testing.T, pki *CertFiles) (string, string) {
	t.Helper()
	ca, err := loadPair(pki.CAFile, pki.CAKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "edgectl"},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := writePair(certFile, keyFile, c); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestConnectRetriesOverTLS(t *testing.T) {
	st, err := NewServerTLS(TLSOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ns := startTLSServer(t, st)
	opts, err := ClientTLS(st.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := Connect(ctx, ns.ClientURL(), "tls-test", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, nc)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", pemBytes)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
