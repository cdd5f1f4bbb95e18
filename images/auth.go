package images

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerConfig is a .dockerconfigjson document.
type dockerConfig struct {
	Auths map[string]authn.AuthConfig `json:"auths"`
}

// registryHost normalizes a key of "auths" ("https://index.docker.io/v1/",
// "registry:5000", "http://127.0.0.1:5000/") to a registry host as
// name.Registry.RegistryStr returns it.
func registryHost(key string) string {
	h := strings.TrimSpace(key)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.Index(h, "/"); i >= 0 {
		h = h[:i]
	}
	h = strings.ToLower(h)
	switch h {
	case "docker.io", "registry-1.docker.io", "index.docker.io":
		return name.DefaultRegistry
	}
	return h
}

// authFor returns the credentials for registry among the pull secrets'
// docker configs (the first one that names the registry), or anonymous.
func authFor(registry string, configs [][]byte) (authn.Authenticator, error) {
	for i, raw := range configs {
		var cfg dockerConfig
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, fmt.Errorf("pull secret %d: invalid .dockerconfigjson: %w", i+1, err)
		}
		for key, a := range cfg.Auths {
			if registryHost(key) != registry {
				continue
			}
			if a.Auth != "" && a.Username == "" {
				dec, err := base64.StdEncoding.DecodeString(a.Auth)
				if err != nil {
					return nil, fmt.Errorf("pull secret %d: registry %s: auth is not base64: %w", i+1, key, err)
				}
				user, pass, ok := strings.Cut(string(dec), ":")
				if !ok {
					return nil, fmt.Errorf("pull secret %d: registry %s: auth is not base64(user:password)", i+1, key)
				}
				a.Username, a.Password, a.Auth = user, pass, ""
			}
			return authn.FromConfig(a), nil
		}
	}
	return authn.Anonymous, nil
}
