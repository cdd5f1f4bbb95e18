package edgeagent

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// HostPathPolicy says which host directories hostPath volumes may use:
// those under one of its prefixes (edge-agent --allow-host-path). The zero
// policy, the default, allows none. Paths are compared after resolving
// symbolic links, so a link under an allowed prefix cannot lead elsewhere.
type HostPathPolicy struct {
	prefixes []string // cleaned, absolute, links resolved
}

// NewHostPathPolicy returns a policy allowing hostPath volumes under the
// given absolute directories.
func NewHostPathPolicy(prefixes []string) (*HostPathPolicy, error) {
	p := &HostPathPolicy{}
	for _, pre := range prefixes {
		if !filepath.IsAbs(pre) {
			return nil, fmt.Errorf("--allow-host-path %q: must be an absolute path", pre)
		}
		resolved, err := resolveExisting(filepath.Clean(pre))
		if err != nil {
			return nil, fmt.Errorf("--allow-host-path %q: %w", pre, err)
		}
		p.prefixes = append(p.prefixes, resolved)
	}
	return p, nil
}

// Prefixes returns the allowed prefixes, links resolved.
func (p *HostPathPolicy) Prefixes() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.prefixes...)
}

// HostPathNotAllowedError is the error of a hostPath volume outside the
// policy. The pod's container waits with reason CreateContainerConfigError
// and this message.
type HostPathNotAllowedError struct {
	Volume   string
	Path     string // as the pod gives it
	Resolved string // with symbolic links resolved
	Allowed  []string
}

func (e *HostPathNotAllowedError) Error() string {
	where := e.Path
	if e.Resolved != e.Path {
		where = fmt.Sprintf("%s (resolves to %s)", e.Path, e.Resolved)
	}
	allowed := "none are allowed: start edge-agent with --allow-host-path PREFIX to allow some"
	if len(e.Allowed) > 0 {
		allowed = "allowed prefixes (--allow-host-path): " + strings.Join(e.Allowed, ", ")
	}
	return fmt.Sprintf("HostPathNotAllowed: volume %s: hostPath %s is not allowed on this node; %s", e.Volume, where, allowed)
}

// Check returns the path to mount for a hostPath volume (links resolved),
// or a *HostPathNotAllowedError.
func (p *HostPathPolicy) Check(volume, path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("volume %s: hostPath %q must be an absolute path", volume, path)
	}
	resolved, err := resolveExisting(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("volume %s: hostPath %s: %w", volume, path, err)
	}
	for _, pre := range p.Prefixes() {
		if within(resolved, pre) {
			return resolved, nil
		}
	}
	return "", &HostPathNotAllowedError{Volume: volume, Path: path, Resolved: resolved, Allowed: p.Prefixes()}
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// resolveExisting resolves the symbolic links of the longest existing
// part of an absolute, clean path and appends the rest, which does not
// exist yet (a DirectoryOrCreate volume).
func resolveExisting(path string) (string, error) {
	rest := ""
	for cur := path; ; {
		resolved, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(resolved, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// confineSubPath checks that a volume mount's subPath, links resolved,
// stays inside the volume: a container could otherwise plant a link in an
// emptyDir and have its next start mount whatever it points to.
func confineSubPath(volume, root, subPath string) (string, error) {
	host := filepath.Join(root, filepath.Clean("/"+subPath))
	rroot, err := resolveExisting(root)
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", volume, err)
	}
	rhost, err := resolveExisting(host)
	if err != nil {
		return "", fmt.Errorf("volume %s: subPath %s: %w", volume, subPath, err)
	}
	if !within(rhost, rroot) {
		return "", fmt.Errorf("volume %s: subPath %q leads out of the volume (to %s)", volume, subPath, rhost)
	}
	return rhost, nil
}
