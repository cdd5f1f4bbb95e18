package edgeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
)

// defaultPidsLimit bounds the processes of one OCI container.
const defaultPidsLimit = 1024

// errPrivileged refuses privileged containers: the agent runs untrusted
// workloads on small devices and offers no way to confine them.
var errPrivileged = errors.New("privileged containers are not allowed")

// securityConfig merges the pod's and the container's securityContext (the
// container's fields win) into what the runtime enforces. imageDir, when
// set, is the unpacked image whose user runAsNonRoot is checked against.
func securityConfig(pod *manifests.Pod, spec *manifests.Container, imageDir string) (runtime.SecurityConfig, error) {
	var out runtime.SecurityConfig
	var nonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		out.RunAsUser, out.RunAsGroup, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
	}
	sc := spec.SecurityContext
	if sc != nil {
		if sc.Privileged != nil && *sc.Privileged {
			return out, errPrivileged
		}
		if sc.RunAsUser != nil {
			out.RunAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			out.RunAsGroup = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		out.ReadOnlyRootFS = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		out.AllowPrivilegeEscalation = sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation
		if c := sc.Capabilities; c != nil {
			out.CapAdd = capNames(c.Add)
			out.CapDrop = capNames(c.Drop)
		}
	}
	if nonRoot != nil && *nonRoot {
		if err := checkNonRoot(out.RunAsUser, imageDir); err != nil {
			return out, err
		}
	}
	return out, nil
}

// capNames accepts "NET_ADMIN" and "CAP_NET_ADMIN" alike.
func capNames(in []string) []string {
	out := make([]string, 0, len(in))
	for _, c := range in {
		out = append(out, strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
	}
	return out
}

// checkNonRoot refuses to run as uid 0, as the kubelet does for
// runAsNonRoot: with runAsUser, that uid; else the image's user, which must
// be numeric to be verified.
func checkNonRoot(runAsUser *int64, imageDir string) error {
	if runAsUser != nil {
		if *runAsUser == 0 {
			return errors.New("container's runAsUser breaks non-root policy")
		}
		return nil
	}
	user := ""
	if imageDir != "" {
		u, err := imageUser(imageDir)
		if err != nil {
			return err
		}
		user = u
	}
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" {
		return errors.New("container has runAsNonRoot and image will run as root")
	}
	uid, err := strconv.ParseInt(name, 10, 64)
	if err != nil {
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root", name)
	}
	if uid == 0 {
		return errors.New("container has runAsNonRoot and image will run as root")
	}
	return nil
}

// imageUser reads config.User of an unpacked image.
func imageUser(dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", fmt.Errorf("read image config: %w", err)
	}
	var cfg struct {
		Config struct {
			User string `json:"User"`
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", fmt.Errorf("decode image config: %w", err)
	}
	return cfg.Config.User, nil
}
