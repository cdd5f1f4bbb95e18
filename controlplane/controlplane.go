// Package controlplane wires the control plane: the embedded NATS server
// (or a connection to an existing one), the buckets, the store, the API
// service and the controllers.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/admission"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/dashboard"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/controlplane/publish"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures Run.
type Config struct {
	// DataDir holds the embedded server's JetStream store.
	DataDir string
	// Listen is host:port of the embedded server; port 0 picks a free one.
	Listen string
	// NATSURL joins an existing NATS (with JetStream) instead of embedding;
	// a comma-separated list names several servers of a cluster (the
	// connection fails over between them and learns the others).
	NATSURL string
	// SyncAlways fsyncs every JetStream write before acknowledging it.
	SyncAlways bool
	// Replicas of every bucket, object store and stream (1 when 0; 3 on a
	// three-server cluster, see docs/scale-out.md). More than 1 needs
	// NATSURL: the embedded server is a single server.
	Replicas int
	// ServiceCIDR is the range of Service cluster IPs
	// (ipam.DefaultServiceCIDR when empty).
	ServiceCIDR string
	// ClusterCIDR is the range node pod CIDRs are cut from
	// (nodeipam.DefaultClusterCIDR when empty); RunControllers reads it.
	ClusterCIDR string
	// SecretsKeyFile holds the keys that encrypt Secrets at rest
	// (DataDir/secrets.key when empty, created with one random key on
	// first start). Every control plane of a cluster uses the same keys.
	// Without it and without DataDir, writing a Secret fails.
	SecretsKeyFile string
	// TLS makes the embedded server accept TLS connections only (see
	// messaging.NewServerTLS: generated certificates in TLS.Dir, default
	// DataDir/tls, valid for the listen host too; or TLS.CertFile);
	// nil serves plaintext. Not used with NATSURL.
	TLS *messaging.TLSOptions
	// Auth turns NATS authentication on (operator mode, see
	// docs/security.md): the embedded server trusts the authority kept in
	// DataDir/auth (created on first start, with the creds files
	// admin.creds and readonly.creds), and the API issues join tokens and
	// node credentials and revokes them. Off, every client may do
	// everything (--dev). Not used with NATSURL.
	Auth bool
	// Creds is the creds file of the control plane's connection to an
	// external NATS (NATSURL).
	Creds string
	// AccountSigningKey (with NATSURL and Creds) is a file holding a
	// signing seed of the account of Creds: with it the control plane
	// issues join tokens and node credentials on an external NATS
	// (revocation stays the operator's: docs/security.md).
	AccountSigningKey string
	// Logger receives what the control plane has to say; discarded if nil.
	Logger *slog.Logger
	// RunControllers runs the controllers until ctx is done; an error
	// ends Run. Nil runs none.
	RunControllers func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error
	// Dashboard, if set, serves the web dashboard (docs/dashboard.md);
	// its DataDir and TLS (the embedded server's certificate) are filled
	// in by Run.
	Dashboard *dashboard.Config
}

// placementWait is how long creating replicated buckets is retried while
// the NATS cluster has too few servers up for them.
const placementWait = 20 * time.Second

// shutdownTimeout bounds draining the connection on the way out.
const shutdownTimeout = 10 * time.Second

// Run runs the control plane until ctx is done, then stops it cleanly.
// ready, if not nil, is called with the NATS URL once the API is served.
func Run(ctx context.Context, cfg Config, ready func(url string)) (err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := cfg.NATSURL
	// A NATS cluster that has just started may not know all its
	// servers yet: placing replicated buckets is retried for a while.
	bucketOpts := messaging.BucketOptions{Replicas: cfg.Replicas, PlacementWait: placementWait}
	if err := bucketOpts.Check(); err != nil {
		return err
	}
	if url == "" && cfg.Replicas > 1 {
		return fmt.Errorf("replicas %d: the embedded NATS server is a single server; run a NATS cluster of at least %d servers and join it with --nats-url (docs/scale-out.md)", cfg.Replicas, cfg.Replicas)
	}
	var tlsOpts []nats.Option
	connURL := url // what the control plane dials: url, unless in process
	var authority *auth.Authority
	if url == "" && cfg.Auth {
		if authority, err = auth.Open(auth.Dir(cfg.DataDir)); err != nil {
			return err
		}
	}
	if url != "" && cfg.Creds != "" {
		if tlsOpts, err = auth.CredsOptions(cfg.Creds); err != nil {
			return err
		}
	}
	if cfg.AccountSigningKey != "" {
		if url == "" || cfg.Creds == "" {
			return fmt.Errorf("account signing key: only with an external NATS and the control plane's creds (--nats-url, --creds)")
		}
		if authority, err = auth.OpenExternal(cfg.AccountSigningKey, cfg.Creds); err != nil {
			return err
		}
	}
	if url == "" {
		ns, st, err := startServer(cfg, authority)
		if err != nil {
			return err
		}
		if st != nil && cfg.Dashboard != nil { // HTTPS with the NATS certificate
			dc := *cfg.Dashboard
			dc.TLS = st.Config
			cfg.Dashboard = &dc
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			log.Info("NATS server stopped")
		}()
		url = localURL(ns.ClientURL())
		log.Info("NATS server started", "url", url, "dataDir", cfg.DataDir, "syncAlways", cfg.SyncAlways)
		if tlsOpts, connURL, err = selfTLS(ns, st, url, log); err != nil {
			return err
		}
		if authority != nil {
			authority.SetPusher(func(accountJWT string) error { return messaging.UpdateAccount(ns, accountJWT) })
			token, seed, err := authority.NewUser("edge-controlplane", auth.RoleAdmin, "", time.Time{})
			if err != nil {
				return err
			}
			tlsOpts = append(tlsOpts, nats.UserJWTAndSeed(token, string(seed)))
			log.Info("NATS authentication on", "adminCreds", authority.AdminCredsPath(), "readonlyCreds", authority.ReadonlyCredsPath())
		} else {
			log.Warn("NATS authentication off (--dev): every client may do everything")
		}
	}
	nc, err := messaging.Connect(ctx, connURL, "edge-controlplane", append(tlsOpts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrl()) }),
	)...)
	if err != nil {
		return err
	}
	defer drain(nc, log)
	if cfg.NATSURL != "" {
		log.Info("joined NATS", "url", nc.ConnectedUrl(), "server", nc.ConnectedServerName(), "cluster", nc.ConnectedClusterName(), "replicas", max(cfg.Replicas, 1))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b, err := messaging.OpenBuckets(ctx, js, bucketOpts)
	if err != nil {
		return err
	}
	keyring, err := openKeyring(cfg)
	if err != nil {
		return err
	}
	st := store.New(b.Objects, store.WithKeyring(keyring), store.WithJetStream(js))
	// LimitRange and ResourceQuota, for the API and controllers alike (docs/quotas.md).
	adm := admission.New(st, log)
	st.SetAdmitter(adm)
	go func() {
		if err := adm.Watch(ctx, st); err != nil && ctx.Err() == nil {
			log.Warn("admission caches: listing the store on every create", "err", err)
		}
	}()
	serviceCIDR := cfg.ServiceCIDR
	if serviceCIDR == "" {
		serviceCIDR = ipam.DefaultServiceCIDR
	}
	services, err := ipam.NewServices(b.Leases, st, serviceCIDR)
	if err != nil {
		return err
	}
	if cfg.ClusterCIDR != "" { // checked here so that a typo stops the start
		if _, err := ipam.NewPodCIDRs(b.Leases, cfg.ClusterCIDR, ipam.DefaultNodeMaskSize); err != nil {
			return err
		}
	}
	apiOpts := api.Options{Logger: log, Services: services}
	if authority != nil {
		apiOpts.Auth = &api.AuthOptions{Authority: authority, JoinTokens: b.JoinTokens, NodeKeys: b.NodeKeys}
	}
	srv := api.New(st, nc, apiOpts)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		if serr := srv.Stop(); serr != nil {
			log.Warn("stop API", "err", serr)
		}
	}()
	log.Info("API serving", "service", messaging.APIServiceName, "version", messaging.APIVersion)
	stopPublish, err := publish.Start(ctx, st, nc, publish.Options{Logger: log}, bucketOpts)
	if err != nil {
		return err
	}
	defer stopPublish()
	if cfg.Dashboard != nil {
		dc := *cfg.Dashboard
		dc.DataDir = cfg.DataDir
		if dc.Logger == nil {
			dc.Logger = log
		}
		stopDashboard, err := dashboard.Start(ctx, st, dc)
		if err != nil {
			return err
		}
		defer stopDashboard()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	secretsDone := make(chan struct{})
	go func() {
		defer close(secretsDone)
		st.KeepSecretsEncrypted(ctx, keyringCheckInterval, func(res store.ReencryptResult, err error) {
			if err != nil {
				log.Warn("secrets: re-encrypt", "keyFile", keyring.Path(), "err", err)
			} else {
				log.Info("secrets: re-encrypted", "key", res.KeyID, "rewritten", res.Rewritten, "alreadyCurrent", res.Current)
			}
		})
	}()
	defer func() { cancel(); <-secretsDone }()
	ctrlErr := make(chan error, 1)
	ctrlRunning := cfg.RunControllers != nil
	if ctrlRunning {
		go func() { ctrlErr <- cfg.RunControllers(ctx, st, b, nc) }()
	}
	if ready != nil {
		ready(url)
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("control plane stopping")
			// Let the controllers finish (the leader releases its lease)
			// while NATS is still up.
			if ctrlRunning {
				select {
				case <-ctrlErr:
				case <-time.After(10 * time.Second):
					log.Warn("controllers did not stop within 10s")
				}
			}
			return nil
		case err := <-ctrlErr:
			ctrlRunning = false
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("controllers: %w", err)
			}
		}
	}
}

// keyringCheckInterval is how often the secrets key file is checked for a
// new current key (which triggers re-encrypting every secret).
const keyringCheckInterval = 10 * time.Second

// openKeyring opens (creating it on first start) the secrets key file.
func openKeyring(cfg Config) (*store.Keyring, error) {
	path := cfg.SecretsKeyFile
	if path == "" && cfg.DataDir == "" {
		return store.DisabledKeyring("secrets: no secrets key file is configured (--secrets-key-file)"), nil
	}
	if path == "" {
		path = filepath.Join(cfg.DataDir, "secrets.key")
	}
	return store.OpenKeyring(path)
}

func startServer(cfg Config, authority *auth.Authority) (*server.Server, *messaging.ServerTLS, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, nil, fmt.Errorf("listen address %q: invalid port", listen)
	}
	if port == 0 {
		port = -1 // random
	}
	var st *messaging.ServerTLS
	if cfg.TLS != nil {
		o := *cfg.TLS
		if o.Dir == "" {
			o.Dir = messaging.TLSDir(cfg.DataDir)
		}
		o.SANs = append([]string{host}, o.SANs...)
		if st, err = messaging.NewServerTLS(o); err != nil {
			return nil, nil, err
		}
	}
	sc := messaging.ServerConfig{
		DataDir:    cfg.DataDir,
		Host:       host,
		Port:       port,
		SyncAlways: cfg.SyncAlways,
		ServerName: "edge-controlplane",
	}
	if cfg.Logger != nil {
		sc.Logger = cfg.Logger.With("component", "nats")
	}
	if st != nil {
		sc.TLS, sc.TLSVerify = st.Config, st.Verify
	}
	if authority != nil {
		sc.Auth = authority.ServerAuth()
	}
	ns, err := messaging.StartServer(sc)
	return ns, st, err
}

// selfTLS are the options of the control plane's own connection to its
// embedded server: it verifies the server with the generated CA; with a
// user-supplied certificate (whose names and CA are the user's) it talks to
// the server in process, which needs no certificate either way. It returns
// the URL to dial: url, or a plaintext one for the in-process connection.
func selfTLS(ns *server.Server, st *messaging.ServerTLS, url string, log *slog.Logger) ([]nats.Option, string, error) {
	inProcess := []nats.Option{nats.InProcessServer(ns)}
	inProcessURL := strings.Replace(url, "tls://", "nats://", 1) // tls:// would start a handshake
	switch {
	case st == nil:
		return nil, url, nil
	case st.CAFile == "":
		log.Info("NATS TLS with the user-supplied certificate", "clientCertificates", st.Verify)
		return inProcess, inProcessURL, nil
	}
	f := st.Files
	if f.CACreated {
		log.Info("NATS TLS: new CA created; clients need it (--tls-ca)", "ca", f.CAFile)
	}
	if f.Issued {
		log.Info("NATS TLS: server certificate issued", "cert", f.CertFile, "notAfter", f.NotAfter.Format(time.RFC3339))
	}
	log.Info("NATS TLS on; clients verify the server with the CA", "ca", f.CAFile, "clientCertificates", st.Verify)
	if st.Verify {
		// The generated CA signs no client certificate for us.
		return inProcess, inProcessURL, nil
	}
	opts, err := messaging.ClientTLS(f.CAFile, "", "")
	if err != nil {
		return nil, "", fmt.Errorf("control plane TLS: %w", err)
	}
	return opts, url, nil
}

// localURL replaces an unspecified listen address (0.0.0.0, ::) in a
// server URL by the loopback address, so that the URL can be dialled.
func localURL(serverURL string) string {
	u, err := neturl.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}

// drain flushes what the connection still has to send, then closes it.
func drain(nc *nats.Conn, log *slog.Logger) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		if !errors.Is(err, nats.ErrConnectionClosed) {
			log.Warn("drain NATS connection", "err", err)
		}
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(shutdownTimeout):
		nc.Close()
	}
}
