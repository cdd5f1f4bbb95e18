package edgectl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// The config file: $EDGECONFIG, or ~/.edge/config.
const (
	envConfig         = "EDGECONFIG"
	defaultConfigDir  = ".edge"
	defaultConfigName = "config"
)

// edgeConfig is the config file: named contexts (a control plane and how
// to reach it) and the one in use, as kubectl's kubeconfig.
//
//	apiVersion: v1
//	kind: Config
//	current-context: lab
//	contexts:
//	- name: lab
//	  context:
//	    server: tls://10.0.0.5:4222
//	    creds: lab/admin.creds     # relative: to the file's directory
//	    tls-ca: lab/ca.pem
//	    namespace: sensors
type edgeConfig struct {
	APIVersion     string         `yaml:"apiVersion,omitempty"`
	Kind           string         `yaml:"kind,omitempty"`
	CurrentContext string         `yaml:"current-context,omitempty"`
	Contexts       []namedContext `yaml:"contexts"`
}

type namedContext struct {
	Name    string          `yaml:"name"`
	Context contextSettings `yaml:"context"`
}

// contextSettings are the global flags a context gives values to.
type contextSettings struct {
	Server    string `yaml:"server,omitempty"`
	Creds     string `yaml:"creds,omitempty"`
	TLSCA     string `yaml:"tls-ca,omitempty"`
	TLSCert   string `yaml:"tls-cert,omitempty"`
	TLSKey    string `yaml:"tls-key,omitempty"`
	Namespace string `yaml:"namespace,omitempty"`
}

// configState is what edgectl knows of the config file once loaded.
type configState struct {
	pathFlag    string // --edgeconfig
	contextFlag string // --context
	// path is the file read; context the context whose settings were
	// used ("" for none); serverFromContext says the server came from it.
	path              string
	context           string
	serverFromContext bool
}

// configPath is the config file to use: --edgeconfig, $EDGECONFIG or
// ~/.edge/config.
func configPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if p := os.Getenv(envConfig); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the config file: %w (set %s)", err, envConfig)
	}
	return filepath.Join(home, defaultConfigDir, defaultConfigName), nil
}

// readConfig reads and checks the config file at path; a missing file is
// an empty config.
func readConfig(path string) (*edgeConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &edgeConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	return parseConfig(path, data)
}

// parseConfig decodes a config file strictly: a syntax error or an unknown
// field is an error naming the file and the line.
func parseConfig(path string, data []byte) (*edgeConfig, error) {
	cfg := &edgeConfig{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	seen := map[string]bool{}
	for i, c := range cfg.Contexts {
		if c.Name == "" {
			return nil, fmt.Errorf("config file %s: contexts[%d].name: required", path, i)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("config file %s: contexts[%d].name: context %q is defined twice", path, i, c.Name)
		}
		seen[c.Name] = true
	}
	return cfg, nil
}

// writeConfig stores cfg at path atomically (a temporary file renamed over
// it), readable by its owner only: the file names credentials.
func writeConfig(path string, cfg *edgeConfig) error {
	if cfg.APIVersion == "" {
		cfg.APIVersion = "v1"
	}
	if cfg.Kind == "" {
		cfg.Kind = "Config"
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	return nil
}

// find returns the context called name.
func (c *edgeConfig) find(name string) (*namedContext, bool) {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i], true
		}
	}
	return nil, false
}

func (c *edgeConfig) names() []string {
	out := make([]string, 0, len(c.Contexts))
	for _, nc := range c.Contexts {
		out = append(out, nc.Name)
	}
	slices.Sort(out)
	return out
}

// unknownContext is the error for a context the file does not define.
func (c *edgeConfig) unknownContext(path, name string) error {
	if len(c.Contexts) == 0 {
		return fmt.Errorf("context %q not found: %s defines no contexts; create one with 'edgectl config set-context %s --server URL'", name, path, name)
	}
	msg := fmt.Sprintf("context %q not found in %s; known contexts: %s", name, path, strings.Join(c.names(), ", "))
	if s := closest(name, c.names()); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return errors.New(msg)
}

// closest returns the candidate nearest to typed within a small edit
// distance, or "".
func closest(typed string, candidates []string) string {
	best, bestDist := "", maxKindDistance(typed)+1
	for _, c := range candidates {
		if d := editDistance(typed, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// resolvePath makes a relative path from the config file absolute against
// the file's directory.
func resolvePath(configFile, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return filepath.Join(filepath.Dir(configFile), p)
}

// addConfigFlags adds --context and --edgeconfig to root and loads the
// config file before any command runs.
func (o *options) addConfigFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVar(&o.cfg.contextFlag, "context", "", "the context of the config file to use (default: its current-context)")
	pf.StringVar(&o.cfg.pathFlag, "edgeconfig", "", "config file with contexts (env "+envConfig+", default ~/.edge/config)")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		// The config commands edit the file, even when its current
		// context is gone; they read it themselves.
		for c := cmd; c != nil; c = c.Parent() {
			if c.Name() == "config" && c.Parent() == root {
				return nil
			}
		}
		return o.applyConfig(root.PersistentFlags())
	}
}

// applyConfig gives the global settings their values from the context
// (--context, else the file's current-context), where neither a flag nor
// the environment set them. Precedence: flag > env (EDGE_SERVER,
// EDGE_CREDS, EDGE_TLS_CA) > context > default.
func (o *options) applyConfig(flags *pflag.FlagSet) error {
	path, err := configPath(o.cfg.pathFlag)
	if err != nil {
		return err
	}
	o.cfg.path = path
	cfg, err := readConfig(path)
	if err != nil {
		return err
	}
	name := o.cfg.contextFlag
	if name == "" {
		name = cfg.CurrentContext
	}
	if name == "" {
		return nil
	}
	nc, ok := cfg.find(name)
	if !ok {
		if o.cfg.contextFlag == "" {
			return fmt.Errorf("current-context: %w", cfg.unknownContext(path, name))
		}
		return fmt.Errorf("--context: %w", cfg.unknownContext(path, name))
	}
	o.cfg.context = name
	s := nc.Context
	changed := func(flag string) bool {
		f := flags.Lookup(flag)
		return f != nil && f.Changed
	}
	set := func(flag, env string, dst *string, v string) bool {
		if v == "" || changed(flag) || (env != "" && os.Getenv(env) != "") {
			return false
		}
		*dst = v
		return true
	}
	o.cfg.serverFromContext = set("server", "EDGE_SERVER", &o.server, s.Server) || o.cfg.serverFromContext
	set("creds", "EDGE_CREDS", &o.creds, resolvePath(path, s.Creds))
	set("tls-ca", "EDGE_TLS_CA", &o.tlsCA, resolvePath(path, s.TLSCA))
	set("tls-cert", "", &o.tlsCert, resolvePath(path, s.TLSCert))
	set("tls-key", "", &o.tlsKey, resolvePath(path, s.TLSKey))
	set("namespace", "", &o.namespace, s.Namespace)
	return nil
}

// contextHint is added to a connection error when the server came from a
// context, so that the operator knows where to fix it.
func (o *options) contextHint() string {
	if !o.cfg.serverFromContext {
		return ""
	}
	return fmt.Sprintf("The server comes from context %q in %s (edgectl config get-contexts; --context NAME or --server URL to use another).", o.cfg.context, o.cfg.path)
}

// ---- edgectl config ----

type configCmdOptions struct {
	*options
}

func newConfigCmd(o *options) *cobra.Command {
	c := &configCmdOptions{options: o}
	cmd := &cobra.Command{
		Use:   "config SUBCOMMAND",
		Short: "View and edit the config file (contexts)",
		Long: `View and edit the config file: named contexts, each a control plane (server,
credentials, CA, default namespace), and the current one.

The file is --edgeconfig, else $EDGECONFIG, else ~/.edge/config. A setting comes
from the flag, else the environment (EDGE_SERVER, EDGE_CREDS, EDGE_TLS_CA), else
the context (--context NAME, else current-context), else the default. Relative
paths in the file are relative to the file's directory.`,
		Example: `  edgectl config set-context lab --server tls://10.0.0.5:4222 --creds ~/lab/admin.creds --tls-ca ~/lab/ca.pem
  edgectl config use-context lab
  edgectl config get-contexts
  edgectl --context prod get nodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(c.viewCmd(), c.getContextsCmd(), c.currentContextCmd(), c.useContextCmd(), c.setContextCmd(), c.deleteContextCmd())
	return cmd
}

// load reads the config file for a config subcommand.
func (c *configCmdOptions) load() (string, *edgeConfig, error) {
	path, err := configPath(c.cfg.pathFlag)
	if err != nil {
		return "", nil, err
	}
	cfg, err := readConfig(path)
	return path, cfg, err
}

func (c *configCmdOptions) viewCmd() *cobra.Command {
	minify := false
	cmd := &cobra.Command{
		Use:   "view",
		Short: "Print the config file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, cfg, err := c.load()
			if err != nil {
				return err
			}
			if minify {
				name := c.cfg.contextFlag
				if name == "" {
					name = cfg.CurrentContext
				}
				if name == "" {
					return errors.New("current-context is not set; give --context NAME")
				}
				nc, ok := cfg.find(name)
				if !ok {
					return cfg.unknownContext(path, name)
				}
				cfg = &edgeConfig{APIVersion: cfg.APIVersion, Kind: cfg.Kind, CurrentContext: name, Contexts: []namedContext{*nc}}
			}
			if cfg.APIVersion == "" {
				cfg.APIVersion, cfg.Kind = "v1", "Config"
			}
			if cfg.Contexts == nil {
				cfg.Contexts = []namedContext{}
			}
			enc := yaml.NewEncoder(c.streams.Out)
			enc.SetIndent(2)
			if err := enc.Encode(cfg); err != nil {
				return fmt.Errorf("print config: %w", err)
			}
			return enc.Close()
		},
	}
	cmd.Flags().BoolVar(&minify, "minify", false, "print only the context in use")
	return cmd
}

func (c *configCmdOptions) getContextsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get-contexts [NAME...]",
		Short: "List the contexts of the config file",
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != outputName {
				return usageErrorf(cmd, "output format %q not supported; allowed: name", output)
			}
			path, cfg, err := c.load()
			if err != nil {
				return err
			}
			list := cfg.Contexts
			if len(args) > 0 {
				list = nil
				for _, a := range args {
					nc, ok := cfg.find(a)
					if !ok {
						return cfg.unknownContext(path, a)
					}
					list = append(list, *nc)
				}
			}
			if output == outputName {
				for _, nc := range list {
					fmt.Fprintln(c.streams.Out, nc.Name)
				}
				return nil
			}
			tw := newTabWriter(c.streams.Out)
			fmt.Fprintln(tw, "CURRENT\tNAME\tSERVER\tCREDS\tNAMESPACE")
			for _, nc := range list {
				cur := ""
				if nc.Name == cfg.CurrentContext {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cur, nc.Name, nc.Context.Server, nc.Context.Creds, nc.Context.Namespace)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: name")
	return cmd
}

func (c *configCmdOptions) currentContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the current context",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cfg, err := c.load()
			if err != nil {
				return err
			}
			if cfg.CurrentContext == "" {
				return errors.New("current-context is not set")
			}
			fmt.Fprintln(c.streams.Out, cfg.CurrentContext)
			return nil
		},
	}
}

func (c *configCmdOptions) useContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make NAME the current context",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "give exactly one context NAME")
			}
			path, cfg, err := c.load()
			if err != nil {
				return err
			}
			if _, ok := cfg.find(args[0]); !ok {
				return cfg.unknownContext(path, args[0])
			}
			cfg.CurrentContext = args[0]
			if err := writeConfig(path, cfg); err != nil {
				return err
			}
			fmt.Fprintf(c.streams.Out, "Switched to context %q.\n", args[0])
			return nil
		},
		ValidArgsFunction: c.completeContextNames,
	}
}

func (c *configCmdOptions) setContextCmd() *cobra.Command {
	var s contextSettings
	current := false
	cmd := &cobra.Command{
		Use:   "set-context NAME | --current [--server URL] [--creds FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--namespace NS]",
		Short: "Create a context or change some of its settings",
		Long: `Create a context or change the settings given (the others stay). An empty
value (--namespace=) removes a setting. Relative file paths are stored absolute.`,
		Example: `  edgectl config set-context lab --server nats://10.0.0.5:4222 --creds ./admin.creds
  edgectl config set-context --current --namespace sensors`,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, cfg, err := c.load()
			if err != nil {
				return err
			}
			var name string
			switch {
			case current && len(args) == 0:
				if cfg.CurrentContext == "" {
					return errors.New("--current: current-context is not set")
				}
				name = cfg.CurrentContext
			case !current && len(args) == 1:
				name = args[0]
			default:
				return usageErrorf(cmd, "give exactly one context NAME, or --current")
			}
			if strings.TrimSpace(name) == "" {
				return usageErrorf(cmd, "the context name must not be empty")
			}
			f := cmd.Flags()
			if f.Changed("server") && s.Server != "" {
				if err := checkServerURL(s.Server); err != nil {
					return usageErrorf(cmd, "--server: %v", err)
				}
			}
			for _, p := range []struct {
				flag string
				v    *string
			}{{"creds", &s.Creds}, {"tls-ca", &s.TLSCA}, {"tls-cert", &s.TLSCert}, {"tls-key", &s.TLSKey}} {
				if f.Changed(p.flag) && *p.v != "" {
					abs, err := filepath.Abs(*p.v)
					if err != nil {
						return usageErrorf(cmd, "--%s: %v", p.flag, err)
					}
					*p.v = abs
				}
			}
			nc, exists := cfg.find(name)
			if !exists {
				cfg.Contexts = append(cfg.Contexts, namedContext{Name: name})
				nc = &cfg.Contexts[len(cfg.Contexts)-1]
			}
			for _, p := range []struct {
				flag    string
				dst, to *string
			}{
				{"server", &nc.Context.Server, &s.Server},
				{"creds", &nc.Context.Creds, &s.Creds},
				{"tls-ca", &nc.Context.TLSCA, &s.TLSCA},
				{"tls-cert", &nc.Context.TLSCert, &s.TLSCert},
				{"tls-key", &nc.Context.TLSKey, &s.TLSKey},
				{"namespace", &nc.Context.Namespace, &s.Namespace},
			} {
				if f.Changed(p.flag) {
					*p.dst = *p.to
				}
			}
			if err := writeConfig(path, cfg); err != nil {
				return err
			}
			verb := "modified"
			if !exists {
				verb = "created"
			}
			fmt.Fprintf(c.streams.Out, "Context %q %s.\n", name, verb)
			return nil
		},
		ValidArgsFunction: c.completeContextNames,
	}
	f := cmd.Flags()
	f.BoolVar(&current, "current", false, "change the current context")
	f.StringVar(&s.Server, "server", "", "NATS URL of the control plane")
	f.StringVar(&s.Creds, "creds", "", "NATS credentials file")
	f.StringVar(&s.TLSCA, "tls-ca", "", "CA file (PEM) that verifies the server's certificate")
	f.StringVar(&s.TLSCert, "tls-cert", "", "client certificate (PEM)")
	f.StringVar(&s.TLSKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVarP(&s.Namespace, "namespace", "n", "", "default namespace of the context")
	return cmd
}

// checkServerURL checks that s looks like a NATS URL (or a comma list).
func checkServerURL(s string) error {
	for _, part := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q is not a URL: %v", part, err)
		}
		if u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("%q is not a URL of the form nats://HOST:PORT (or tls://, ws://, wss://)", part)
		}
	}
	return nil
}

func (c *configCmdOptions) deleteContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context from the config file",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "give exactly one context NAME")
			}
			path, cfg, err := c.load()
			if err != nil {
				return err
			}
			name := args[0]
			if _, ok := cfg.find(name); !ok {
				return cfg.unknownContext(path, name)
			}
			cfg.Contexts = slices.DeleteFunc(cfg.Contexts, func(nc namedContext) bool { return nc.Name == name })
			wasCurrent := cfg.CurrentContext == name
			if wasCurrent {
				cfg.CurrentContext = ""
			}
			if err := writeConfig(path, cfg); err != nil {
				return err
			}
			if wasCurrent {
				fmt.Fprintln(c.streams.ErrOut, "warning: this removed your current context; use 'edgectl config use-context NAME' to select another")
			}
			fmt.Fprintf(c.streams.Out, "deleted context %s from %s\n", name, path)
			return nil
		},
		ValidArgsFunction: c.completeContextNames,
	}
}

// completeContextNames completes the names of the contexts in the file.
func (c *configCmdOptions) completeContextNames(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	_, cfg, err := c.load()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range cfg.names() {
		if strings.HasPrefix(n, toComplete) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
