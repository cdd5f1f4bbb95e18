package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/internal/testio"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/auth"
	"github.com/nats-io/nats.go"
)

func TestTLSFlagDefaults(t *testing.T) {
	cmd := newCommand()
	for name, want := range map[string]string{
		"tls": "true", "dev": "false", "tls-cert": "", "tls-key": "", "tls-client-ca": "", "tls-san": "[]",
	} {
		f := cmd.Flags().Lookup(name)
		if f == nil || f.DefValue != want {
			t.Errorf("flag --%s: %+v, want default %q", name, f, want)
		}
	}
}

func TestTLSFlagsToOptions(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string // "" for success
		wantNil bool   // plaintext
		check   func(*messaging.TLSOptions) bool
	}{
		{args: nil, check: func(o *messaging.TLSOptions) bool { return o.CertFile == "" && len(o.SANs) == 0 }},
		{args: []string{"--tls-san", "edge.example,10.0.0.5", "--tls-san", "gw"},
			check: func(o *messaging.TLSOptions) bool { return strings.Join(o.SANs, " ") == "edge.example 10.0.0.5 gw" }},
		{args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"},
			check: func(o *messaging.TLSOptions) bool {
				return o.CertFile == "c.pem" && o.KeyFile == "k.pem" && o.ClientCAFile == "ca.pem"
			}},
		{args: []string{"--dev"}, wantNil: true},
		{args: []string{"--tls=false"}, wantNil: true},
		{args: []string{"--nats-url", "nats://127.0.0.1:4222"}, wantNil: true},
		{args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-key"},
		{args: []string{"--dev", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, wantErr: "--dev"},
		{args: []string{"--tls=false", "--tls-san", "x"}, wantErr: "--tls=false"},
		{args: []string{"--nats-url", "nats://x:4222", "--tls-client-ca", "ca.pem"}, wantErr: "--nats-url"},
	} {
		cmd := newCommand()
		var f tlsFlags
		// Parse only: reach the flag values through the command's own.
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		fl := cmd.Flags()
		f.on, _ = fl.GetBool("tls")
		f.cert, _ = fl.GetString("tls-cert")
		f.key, _ = fl.GetString("tls-key")
		f.clientCA, _ = fl.GetString("tls-client-ca")
		f.sans, _ = fl.GetStringSlice("tls-san")
		dev, _ := fl.GetBool("dev")
		natsURL, _ := fl.GetString("nats-url")
		o, err := f.options(cmd, dev, natsURL != "")
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %v; want an error naming %s", tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.wantNil != (o == nil):
			t.Errorf("%v: TLS options %+v; want nil %v", tc.args, o, tc.wantNil)
		case tc.check != nil && !tc.check(o):
			t.Errorf("%v: TLS options %+v", tc.args, o)
		}
	}
}

// runCommand runs edge-controlplane with args until the test ends and
// returns the fields of its ready line.
func runCommand(t *testing.T, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newCommand()
	out, errOut := &testio.SyncBuffer{}, &testio.SyncBuffer{}
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("edge-controlplane: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("edge-controlplane did not stop")
		}
		if t.Failed() {
			t.Logf("log:\n%s", errOut.String())
		}
	})
	var line []string
	eventually(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("edge-controlplane exited: %v\n%s", err, errOut.String())
		default:
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "edge-controlplane ready") {
				line = strings.Fields(l)
				return nil
			}
		}
		return fmt.Errorf("no ready line yet")
	})
	return line
}

func TestRunWithGeneratedTLS(t *testing.T) {
	dataDir := t.TempDir()
	line := runCommand(t, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--tls-san", "edge.example")
	// edge-controlplane ready, NATS at tls://127.0.0.1:PORT with CA /abs/ca.pem[, ...]
	url, ca := readyField(line, "at"), readyField(line, "CA")
	if !strings.HasPrefix(url, "tls://") || ca == "" {
		t.Fatalf("ready line %q: want the tls:// URL and the CA", strings.Join(line, " "))
	}
	if want := filepath.Join(dataDir, "tls", "ca.pem"); ca != want {
		t.Errorf("CA %s, want %s", ca, want)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "tls", "server-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server key: %v, %v; want mode 0600", fi, err)
	}
	opts := clientOpts(t, dataDir, ca)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect with the CA: %v", err)
	}
	defer nc.Close()
	// The API answers over TLS (the control plane's own connection works).
	eventually(t, 10*time.Second, func() error {
		_, err := nc.Request("$SRV.PING", nil, time.Second)
		return err
	})
	if _, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil || messaging.TLSHint(err, "--tls-ca") == "" {
		t.Errorf("connect without the CA: %v; want a TLS error with a hint", err)
	}
}

func TestRunWithUserCert(t *testing.T) {
	// The user's own PKI, made elsewhere.
	pki, err := messaging.EnsureCerts(messaging.CertOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	line := runCommand(t, "--data-dir", dataDir, "--listen", "127.0.0.1:0",
		"--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile)
	url := readyField(line, "at")
	if !strings.HasPrefix(url, "tls://") || readyField(line, "CA") != "" {
		t.Fatalf("ready line %q: want a tls:// URL and no generated CA", strings.Join(line, " "))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "tls")); !os.IsNotExist(err) {
		t.Errorf("user-supplied certificate: %s/tls exists (%v); want no CA generated", dataDir, err)
	}
	opts := clientOpts(t, dataDir, pki.CAFile)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect with the user's CA: %v", err)
	}
	defer nc.Close()
	eventually(t, 10*time.Second, func() error {
		_, err := nc.Request("$SRV.PING", nil, time.Second)
		return err
	})

	t.Run("client certificates required", func(t *testing.T) {
		line := runCommand(t, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
			"--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile, "--tls-client-ca", pki.CAFile)
		// Ready means the control plane's own (in-process) connection
		// serves the API; a client without a certificate is refused.
		if _, err := nats.Connect(readyField(line, "at"), append(opts, nats.Timeout(5*time.Second))...); err == nil {
			t.Fatal("client without a certificate connected")
		}
	})
}

func TestRunDevIsPlaintext(t *testing.T) {
	line := runCommand(t, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--dev")
	url := readyField(line, "at")
	if !strings.HasPrefix(url, "nats://") || readyField(line, "CA") != "" {
		t.Fatalf("ready line %q: want a nats:// URL and no CA", strings.Join(line, " "))
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("plaintext connect in dev mode: %v", err)
	}
	nc.Close()
}

// readyField is the word after key in the ready line, without a trailing
// comma; "" if key is not there.
func readyField(line []string, key string) string {
	for i := 0; i+1 < len(line); i++ {
		if line[i] == key {
			return strings.TrimSuffix(line[i+1], ",")
		}
	}
	return ""
}

// clientOpts verify the server with ca and, when the control plane runs
// with authentication, present its admin credentials.
func clientOpts(t *testing.T, dataDir, ca string) []nats.Option {
	t.Helper()
	opts, err := messaging.ClientTLS(ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if creds := filepath.Join(auth.Dir(dataDir), auth.AdminCredsFile); fileExists(creds) {
		opts = append(opts, nats.UserCredentials(creds))
	}
	return opts
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
