package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

// NodeCredsFile is where a joined agent keeps its credentials, under its
// data dir.
const NodeCredsFile = "node.creds"

// CredsConfig says how the agent finds its NATS credentials.
type CredsConfig struct {
	// Server is the NATS URL (for joining).
	Server   string
	NodeName string
	DataDir  string
	// CredsFile is a creds file given by the operator (--creds); it wins.
	CredsFile string
	// JoinToken (--join-token) is used when neither CredsFile nor
	// DataDir/node.creds exists: the agent joins once and writes
	// DataDir/node.creds.
	JoinToken string
	// Dial are extra connection options (TLS) used to join.
	Dial   []nats.Option
	Logger *slog.Logger
}

// Credentials returns the connection options of the agent's identity:
// CredsFile, else DataDir/node.creds (no network needed: an agent starts
// offline), else a join with JoinToken (which needs the control plane),
// else none (a control plane with --dev). The creds must be a node's, for
// NodeName.
func Credentials(ctx context.Context, cfg CredsConfig) ([]nats.Option, string, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := cfg.CredsFile
	if path == "" {
		own := filepath.Join(cfg.DataDir, NodeCredsFile)
		_, err := os.Stat(own)
		switch {
		case err == nil:
			path = own
		case !errors.Is(err, fs.ErrNotExist):
			return nil, "", fmt.Errorf("node credentials: %w", err)
		case cfg.JoinToken != "":
			if err := Join(ctx, cfg.Server, cfg.JoinToken, cfg.NodeName, own, log, cfg.Dial...); err != nil {
				return nil, "", err
			}
			path = own
		default:
			return nil, "", nil
		}
	}
	c, err := auth.ReadCreds(path)
	if err != nil {
		return nil, "", fmt.Errorf("node credentials: %w", err)
	}
	if c.Role() != auth.RoleNode || c.Claims.Name != cfg.NodeName {
		return nil, "", fmt.Errorf("node credentials %s: issued to %s %q, not to node %q", path, c.Role(), c.Claims.Name, cfg.NodeName)
	}
	return c.Options(), path, nil
}

// joinRetry bounds the wait between join attempts while the control plane
// cannot be reached.
const joinRetry = 5 * time.Second

// Join makes the node's user key pair (the seed stays on the device), asks
// the control plane for the node's JWT with the join token, and writes the
// creds file credsPath (0600). It retries while the control plane is
// unreachable; a used, expired or unknown token is a clear error.
func Join(ctx context.Context, url, token, node, credsPath string, log *slog.Logger, dial ...nats.Option) error {
	jt, err := auth.ParseJoinToken(token)
	if err != nil {
		return err
	}
	jc, err := jt.Creds()
	if err != nil {
		return err
	}
	if exp := jc.Expires(); !exp.IsZero() && !time.Now().Before(exp) {
		return fmt.Errorf("join token %s expired at %s; create a new one with `edgectl token create`", jt.ID, exp.UTC().Format(time.RFC3339))
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return fmt.Errorf("join: create node key: %w", err)
	}
	pub, _ := kp.PublicKey()
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("join: node key: %w", err)
	}
	req := client.JoinRequest{TokenID: jt.ID, Secret: jt.Secret, Node: node, PublicKey: pub}
	delay := 250 * time.Millisecond
	for {
		userJWT, err := joinOnce(ctx, url, jc, req, dial)
		if err == nil {
			creds, err := jwt.FormatUserConfig(userJWT, seed)
			if err != nil {
				return fmt.Errorf("join: %w", err)
			}
			if err := writeCreds(credsPath, creds); err != nil {
				return err
			}
			log.Info("joined: node credentials written", "node", node, "creds", credsPath)
			return nil
		}
		if code := client.CodeOf(err); code != "" && code != client.CodeUnavailable {
			return fmt.Errorf("join as node %s: %w", node, err)
		}
		if exp := jc.Expires(); !exp.IsZero() && !time.Now().Before(exp) {
			return fmt.Errorf("join token %s expired at %s before the control plane could be reached (%v)", jt.ID, exp.UTC().Format(time.RFC3339), err)
		}
		if hint := messaging.TLSHint(err, "--tls-ca FILE"); hint != "" {
			log.Error("join: cannot connect to the control plane over TLS; retrying", "err", err, "hint", hint)
		} else {
			log.Warn("join: control plane not reachable yet, retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join as node %s: %w", node, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, joinRetry)
	}
}

func joinOnce(ctx context.Context, url string, jc *auth.Creds, req client.JoinRequest, dial []nats.Option) (string, error) {
	opts := append(append([]nats.Option{nats.Name("edge-agent join " + req.Node), nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}, dial...), jc.Options()...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return "", client.Errorf(client.CodeForbidden, "the server refused the join token's credentials: %v", err)
		}
		return "", fmt.Errorf("connect to %s: %w", url, err) // retried
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return client.New(nc).Join(cctx, req)
}

// writeCreds writes a creds file atomically, readable by its owner only.
func writeCreds(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
