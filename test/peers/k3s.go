package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeorch/edgeorch/test/bench/proc"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"gopkg.in/yaml.v3"

	"github.com/edgeorch/edgeorch/images/imagetest"
)

// k3sImage is the busybox image built here and imported by K3s at start
// from its airgap images directory; pods never pull, and it serves as the
// pods' sandbox (pause) image too.
const k3sImage = "docker.io/library/edge-peers-busybox:bench"

// k3s is a K3s server with its agent on loopback (packaged components that
// a single-node task run needs not are disabled); a task is a pod.
type k3s struct {
	bin  string
	d    *proc.Daemon
	dir  string
	base string
	hc   *http.Client
}

func newK3s(path string) system { return &k3s{bin: path} }

func (k *k3s) name() string { return "k3s" }

func (k *k3s) start(ctx context.Context, dir string) error {
	k.dir = dir
	data := filepath.Join(dir, "data")
	images := filepath.Join(data, "agent", "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return err
	}
	// Built before the clock starts: the image is the task's, not the server's.
	tag, err := name.NewTag(k3sImage)
	if err != nil {
		return err
	}
	img := imagetest.Busybox(panicTB{}, v1.Config{Cmd: []string{"sleep", "3600"}})
	if err := tarball.WriteToFile(filepath.Join(images, "busybox.tar"), tag, img); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig.yaml")
	k.d, err = proc.Start(filepath.Join(dir, "k3s.log"), nil, k.bin, "server",
		"--data-dir", data, "--https-listen-port", fmt.Sprint(ports[0]),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--node-ip", "127.0.0.1",
		"--flannel-iface", "lo", "--write-kubeconfig", kubeconfig,
		"--disable", "traefik,servicelb,metrics-server,local-storage,coredns",
		"--kubelet-arg", "root-dir="+filepath.Join(dir, "kubelet"),
		// The sandbox image too: nothing can be pulled here. Its command
		// (sleep 3600) outlives a run.
		"--pause-image", k3sImage)
	if err != nil {
		return err
	}
	k.base = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	return proc.PollFor(ctx, 3*time.Minute, 10*time.Millisecond, func() error {
		if err := k.d.Exited(); err != nil {
			return err
		}
		if k.hc == nil {
			hc, err := kubeClient(kubeconfig)
			if err != nil {
				return err
			}
			k.hc = hc
		}
		var nodes struct {
			Items []struct {
				Status struct {
					Conditions []struct{ Type, Status string }
				}
			}
		}
		if err := httpJSON(ctx, k.hc, "GET", k.base+"/api/v1/nodes", nil, &nodes); err != nil {
			return err
		}
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					return nil
				}
			}
		}
		return fmt.Errorf("no Ready node among %d", len(nodes.Items))
	})
}

// kubeClient makes an HTTP client from the admin kubeconfig K3s writes:
// its CA and client certificate.
func kubeClient(path string) (*http.Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				CA string `yaml:"certificate-authority-data"`
			}
		}
		Users []struct {
			User struct {
				Cert string `yaml:"client-certificate-data"`
				Key  string `yaml:"client-key-data"`
			}
		}
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if len(kc.Clusters) == 0 || len(kc.Users) == 0 {
		return nil, fmt.Errorf("kubeconfig %s: no cluster or user", path)
	}
	dec := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(dec(kc.Clusters[0].Cluster.CA)) {
		return nil, fmt.Errorf("kubeconfig %s: no CA certificate", path)
	}
	cert, err := tls.X509KeyPair(dec(kc.Users[0].User.Cert), dec(kc.Users[0].User.Key))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: client certificate: %w", path, err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}, nil
}

func (k *k3s) prepare(ctx context.Context) error {
	// The default service account must exist before pods are admitted.
	return proc.PollFor(ctx, time.Minute, 50*time.Millisecond, func() error {
		return httpJSON(ctx, k.hc, "GET", k.base+"/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
	})
}

func (k *k3s) submit(ctx context.Context, batch string, names []string) error {
	for _, n := range names {
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": n, "labels": map[string]string{"peers": batch}},
			"spec": map[string]any{
				"terminationGracePeriodSeconds": 0,
				"containers": []any{map[string]any{
					"name": "c", "image": k3sImage, "imagePullPolicy": "Never",
					"resources": map[string]any{"limits": map[string]any{"memory": "32Mi"}},
				}},
			},
		}
		if err := httpJSON(ctx, k.hc, "POST", k.base+"/api/v1/namespaces/default/pods", pod, nil); err != nil {
			return fmt.Errorf("create pod %s: %w", n, err)
		}
	}
	return proc.PollFor(ctx, 3*time.Minute, 10*time.Millisecond, func() error {
		running, total, err := k.pods(ctx, batch)
		if err != nil {
			return err
		}
		if running < len(names) {
			return fmt.Errorf("%d/%d pods Running (%d listed)", running, len(names), total)
		}
		return nil
	})
}

func (k *k3s) pods(ctx context.Context, batch string) (running, total int, err error) {
	var list struct {
		Items []struct {
			Status struct{ Phase string }
		}
	}
	u := k.base + "/api/v1/namespaces/default/pods?labelSelector=" + url.QueryEscape("peers="+batch)
	if err := httpJSON(ctx, k.hc, "GET", u, nil, &list); err != nil {
		return 0, 0, err
	}
	for _, p := range list.Items {
		if p.Status.Phase == "Running" {
			running++
		}
	}
	return running, len(list.Items), nil
}

func (k *k3s) remove(ctx context.Context, batch string, names []string) error {
	u := k.base + "/api/v1/namespaces/default/pods?labelSelector=" + url.QueryEscape("peers="+batch)
	if err := httpJSON(ctx, k.hc, "DELETE", u, nil, nil); err != nil {
		return fmt.Errorf("delete pods: %w", err)
	}
	return proc.PollFor(ctx, 3*time.Minute, 50*time.Millisecond, func() error {
		_, total, err := k.pods(ctx, batch)
		if err != nil {
			return err
		}
		if total > 0 {
			return fmt.Errorf("%d pods left", total)
		}
		return nil
	})
}

func (k *k3s) writeConfigs(ctx context.Context, prefix string, n int) error {
	for i := 0; i < n; i++ {
		cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": fmt.Sprintf("%s-%d", prefix, i)}, "data": map[string]string{"k": "v"}}
		if err := httpJSON(ctx, k.hc, "POST", k.base+"/api/v1/namespaces/default/configmaps", cm, nil); err != nil {
			return fmt.Errorf("create configmap %s-%d: %w", prefix, i, err)
		}
	}
	return nil
}

// usage counts the server and every process run from its data directory
// (containerd, its shims, and their containers).
func (k *k3s) usage() procSet {
	if k.d == nil {
		return procSet{}
	}
	return procSet{roots: []int{k.d.PID()}, exeDir: filepath.Join(k.dir, "data")}
}

// stop ends the server, then what it leaves running by design
// (containerd shims and containers) and its mounts.
func (k *k3s) stop() {
	left := k.usage().pids()
	k.d.StopWithin(30 * time.Second)
	killPIDs(append(left, k.usage().pids()...))
	unmountUnder(k.dir, "/run/k3s")
}
