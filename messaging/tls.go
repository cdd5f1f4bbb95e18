package messaging

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Files of the generated TLS material, in the TLS directory
// (<data-dir>/tls for the control plane).
const (
	CAFileName         = "ca.pem"
	CAKeyFileName      = "ca-key.pem"
	ServerCertFileName = "server.pem"
	ServerKeyFileName  = "server-key.pem"
)

// Lifetimes of the generated certificates.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	// RenewBefore is how long before it expires the server certificate
	// is replaced (at start, or on the next TLS handshake).
	RenewBefore = 30 * 24 * time.Hour
)

// TLSDir is where the control plane keeps its TLS material.
func TLSDir(dataDir string) string { return filepath.Join(dataDir, "tls") }

// CertOptions configure the generated CA and server certificate.
type CertOptions struct {
	// Dir holds the CA and the server certificate (created 0700 if
	// missing; keys are written 0600).
	Dir string
	// Hosts are names and addresses the server certificate is valid for,
	// beyond localhost, 127.0.0.1, ::1 and the hostname (the listen host,
	// --tls-san values). Unspecified addresses (0.0.0.0, ::) are skipped.
	Hosts []string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// CertFiles are the paths of generated TLS material and what EnsureCerts did.
type CertFiles struct {
	CAFile, CAKeyFile, CertFile, KeyFile string
	// CACreated is true when a new CA was written (first start, or the old
	// one expired or was unreadable): clients need the new ca.pem.
	CACreated bool
	// Issued is true when a new server certificate was written.
	Issued bool
	// NotAfter is when the server certificate expires.
	NotAfter time.Time
}

// EnsureCerts makes sure opts.Dir holds a valid CA (ECDSA P-256, 10 years)
// and a server certificate signed by it for the wanted names. Existing files
// are reused; each is replaced when it is missing, unreadable or expires
// within RenewBefore; the server certificate also when the wanted names
// change or the CA was replaced.
func EnsureCerts(opts CertOptions) (*CertFiles, error) {
	if opts.Dir == "" {
		return nil, errors.New("tls certificates: directory is required")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	sans, err := serverSANs(opts.Hosts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls certificates: create %s: %w", opts.Dir, err)
	}
	f := &CertFiles{
		CAFile:    filepath.Join(opts.Dir, CAFileName),
		CAKeyFile: filepath.Join(opts.Dir, CAKeyFileName),
		CertFile:  filepath.Join(opts.Dir, ServerCertFileName),
		KeyFile:   filepath.Join(opts.Dir, ServerKeyFileName),
	}
	t := now()
	ca, err := loadPair(f.CAFile, f.CAKeyFile)
	if err != nil || !ca.Leaf.IsCA || !ca.Leaf.NotAfter.After(t.Add(RenewBefore)) {
		ca, err = newCA(t)
		if err != nil {
			return nil, err
		}
		if err := writePair(f.CAFile, f.CAKeyFile, ca); err != nil {
			return nil, err
		}
		f.CACreated = true
	}
	srv, err := loadPair(f.CertFile, f.KeyFile)
	if err != nil || f.CACreated || !srv.Leaf.NotAfter.After(t.Add(RenewBefore)) ||
		!slices.Equal(certSANs(srv.Leaf), sans.strings()) || srv.Leaf.CheckSignatureFrom(ca.Leaf) != nil {
		srv, err = newServerCert(t, ca, sans)
		if err != nil {
			return nil, err
		}
		if err := writePair(f.CertFile, f.KeyFile, srv); err != nil {
			return nil, err
		}
		f.Issued = true
	}
	f.NotAfter = srv.Leaf.NotAfter
	return f, nil
}

// sanSet is the names and addresses of a server certificate.
type sanSet struct {
	dns []string
	ips []net.IP
}

// strings lists the set sorted, for comparison with a certificate's.
func (s sanSet) strings() []string {
	out := slices.Clone(s.dns)
	for _, ip := range s.ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func certSANs(c *x509.Certificate) []string {
	return sanSet{dns: c.DNSNames, ips: c.IPAddresses}.strings()
}

// serverSANs is the default names plus hosts, deduplicated and checked.
func serverSANs(hosts []string) (sanSet, error) {
	all := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && validDNSName(strings.ToLower(h)) {
		all = append(all, h) // an odd hostname is left out, not an error
	}
	all = append(all, hosts...)
	var s sanSet
	seen := map[string]bool{}
	for _, h := range all {
		h = strings.TrimSpace(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() || seen[ip.String()] {
				continue
			}
			seen[ip.String()] = true
			s.ips = append(s.ips, ip)
			continue
		}
		h = strings.ToLower(h)
		if !validDNSName(h) {
			return sanSet{}, fmt.Errorf("tls certificates: %q is neither an IP address nor a DNS name", h)
		}
		if !seen[h] {
			seen[h] = true
			s.dns = append(s.dns, h)
		}
	}
	return s, nil
}

// validDNSName accepts host names, with an optional leading wildcard label.
func validDNSName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for i, label := range strings.Split(h, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// keyPair is a parsed certificate with its key.
type keyPair struct {
	Leaf    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

func loadPair(certFile, keyFile string) (*keyPair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", keyFile)
	}
	if fi, err := os.Stat(keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(keyFile, 0o600); err != nil {
			return nil, fmt.Errorf("restrict %s to 0600: %w", keyFile, err)
		}
	}
	return &keyPair{Leaf: pair.Leaf, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// writePair writes the key (0600), then the certificate (0644), each
// through a temporary file and a rename, so that a crash leaves either the
// old files or a mismatched pair that the next start replaces.
func writePair(certFile, keyFile string, p *keyPair) error {
	if err := writeFileAtomic(keyFile, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, p.CertPEM, 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newCA(now time.Time) (*keyPair, error) {
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"edgeorch"}, CommonName: "edgeorch CA " + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return issue(tmpl, nil)
}

func newServerCert(now time.Time, ca *keyPair, sans sanSet) (*keyPair, error) {
	tmpl := &x509.Certificate{
		Subject: pkix.Name{Organization: []string{"edgeorch"}, CommonName: "edge-controlplane"},
		// Valid from the CA's start, not from now: a device without a
		// real-time clock that boots with a time in the past still
		// accepts a certificate renewed since.
		NotBefore:   ca.Leaf.NotBefore,
		NotAfter:    now.Add(ServerValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    sans.dns,
		IPAddresses: sans.ips,
	}
	if tmpl.NotAfter.After(ca.Leaf.NotAfter) {
		tmpl.NotAfter = ca.Leaf.NotAfter
	}
	return issue(tmpl, ca)
}

// issue signs tmpl with a new P-256 key, by ca (self-signed when nil).
func issue(tmpl *x509.Certificate, ca *keyPair) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl.SerialNumber = serial
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.Leaf, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return &keyPair{
		Leaf:    leaf,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// TLSOptions configure TLS on the embedded server.
type TLSOptions struct {
	// Dir holds the generated CA and server certificate
	// (<data-dir>/tls); unused with CertFile.
	Dir string
	// SANs are extra names and addresses of the generated server
	// certificate (the listen host, --tls-san).
	SANs []string
	// CertFile and KeyFile are a user-supplied server certificate (PEM,
	// chain first) and key; then no CA is generated.
	CertFile, KeyFile string
	// ClientCAFile, if set, makes the server require client certificates
	// signed by a CA in this PEM file.
	ClientCAFile string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// ServerTLS is the TLS setup of the embedded server.
type ServerTLS struct {
	// Config is the server's TLS configuration.
	Config *tls.Config
	// CAFile is the generated CA that clients verify the server with;
	// empty with a user-supplied certificate.
	CAFile string
	// Files is what EnsureCerts did; nil with a user-supplied certificate.
	Files *CertFiles
	// Verify is true when clients must present a certificate.
	Verify bool
}

// NewServerTLS builds the server's TLS configuration: from the user's
// certificate and key when given, else from a CA and server certificate
// generated (or reused) in opts.Dir, renewed while the server runs when the
// certificate nears its expiry.
func NewServerTLS(opts TLSOptions) (*ServerTLS, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	st := &ServerTLS{Config: cfg}
	switch {
	case opts.CertFile != "" || opts.KeyFile != "":
		if opts.CertFile == "" || opts.KeyFile == "" {
			return nil, errors.New("tls: a certificate needs both --tls-cert and --tls-key")
		}
		pair, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load --tls-cert %s and --tls-key %s: %w", opts.CertFile, opts.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	default:
		files, err := EnsureCerts(CertOptions{Dir: opts.Dir, Hosts: opts.SANs, Now: opts.Now})
		if err != nil {
			return nil, err
		}
		src, err := newRenewingCert(CertOptions{Dir: opts.Dir, Hosts: opts.SANs, Now: opts.Now}, files)
		if err != nil {
			return nil, err
		}
		cfg.GetCertificate = src.get
		st.CAFile, st.Files = files.CAFile, files
	}
	if opts.ClientCAFile != "" {
		pool, err := loadPool(opts.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: --tls-client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		st.Verify = true
	}
	return st, nil
}

// renewingCert serves the generated server certificate and replaces it
// (on disk too) once it nears its expiry, so a long-running server never
// serves an expired certificate.
type renewingCert struct {
	opts CertOptions
	now  func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	notAfter time.Time
}

func newRenewingCert(opts CertOptions, files *CertFiles) (*renewingCert, error) {
	r := &renewingCert{opts: opts, now: time.Now}
	if opts.Now != nil {
		r.now = opts.Now
	}
	return r, r.load(files)
}

func (r *renewingCert) load(files *CertFiles) error {
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: load server certificate: %w", err)
	}
	r.cert, r.notAfter = &pair, pair.Leaf.NotAfter
	return nil
}

func (r *renewingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.now().Add(RenewBefore).Before(r.notAfter) {
		return r.cert, nil
	}
	files, err := EnsureCerts(r.opts)
	if err != nil {
		if r.now().Before(r.notAfter) {
			return r.cert, nil // still valid: try again on the next handshake
		}
		return nil, fmt.Errorf("renew server certificate: %w", err)
	}
	if err := r.load(files); err != nil {
		return nil, err
	}
	return r.cert, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// ClientTLS returns the options with which a client verifies the server
// against the CA certificates in caFile (and so requires TLS), presenting
// certFile/keyFile as its own certificate when given (for a server that
// requires client certificates). All empty: no options (the client still
// upgrades to TLS when the server requires it, verifying against the
// system's roots).
func ClientTLS(caFile, certFile, keyFile string) ([]nats.Option, error) {
	var opts []nats.Option
	if caFile != "" {
		if _, err := loadPool(caFile); err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		opts = append(opts, nats.RootCAs(caFile))
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("client certificate: both the certificate and the key file are needed")
		}
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		opts = append(opts, nats.ClientCert(certFile, keyFile))
	}
	return opts, nil
}

// TLSHint says how to fix a failed connection when TLS is the cause, ""
// otherwise. caFlag names the client's CA flag (e.g. "--tls-ca FILE").
func TLSHint(err error, caFlag string) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by a CA this client trusts: pass the control plane's CA with " +
			caFlag + " (the control plane logs where its ca.pem is, by default <data-dir>/tls/ca.pem)"
	case errors.As(err, &host):
		return "the server's certificate is not valid for this address: connect by a name it lists, " +
			"or add the address to the control plane's certificate with --tls-san"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's certificate is expired or not yet valid at this machine's time: check the clock"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "this client wants TLS (a CA file or a tls:// URL) but the server offers none (control plane started with --tls=false or --dev)"
	case errors.Is(err, nats.ErrTLS):
		return "the TLS handshake failed: check " + caFlag + " and, if the server requires client certificates, --tls-cert and --tls-key"
	}
	return ""
}
