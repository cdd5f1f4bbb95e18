package oci

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/runtime"
)

// The subset of the OCI runtime spec (github.com/opencontainers/runtime-spec,
// specs-go) this runtime writes; field names and JSON keys are the spec's.
type (
	spec struct {
		Version  string      `json:"ociVersion"`
		Process  *process    `json:"process"`
		Root     *specRoot   `json:"root"`
		Hostname string      `json:"hostname,omitempty"`
		Mounts   []specMount `json:"mounts"`
		Linux    *linux      `json:"linux"`
	}
	process struct {
		Terminal        bool          `json:"terminal,omitempty"`
		User            user          `json:"user"`
		Args            []string      `json:"args"`
		Env             []string      `json:"env,omitempty"`
		Cwd             string        `json:"cwd"`
		Capabilities    *capabilities `json:"capabilities,omitempty"`
		Rlimits         []rlimit      `json:"rlimits,omitempty"`
		NoNewPrivileges bool          `json:"noNewPrivileges,omitempty"`
	}
	user struct {
		UID            uint32   `json:"uid"`
		GID            uint32   `json:"gid"`
		AdditionalGids []uint32 `json:"additionalGids,omitempty"`
	}
	capabilities struct {
		Bounding    []string `json:"bounding"`
		Effective   []string `json:"effective"`
		Inheritable []string `json:"inheritable"`
		Permitted   []string `json:"permitted"`
		Ambient     []string `json:"ambient"`
	}
	rlimit struct {
		Type string `json:"type"`
		Hard uint64 `json:"hard"`
		Soft uint64 `json:"soft"`
	}
	specRoot struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly,omitempty"`
	}
	specMount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type,omitempty"`
		Source      string   `json:"source,omitempty"`
		Options     []string `json:"options,omitempty"`
	}
	linux struct {
		Resources     *resources  `json:"resources,omitempty"`
		CgroupsPath   string      `json:"cgroupsPath,omitempty"`
		Namespaces    []namespace `json:"namespaces"`
		MaskedPaths   []string    `json:"maskedPaths,omitempty"`
		ReadonlyPaths []string    `json:"readonlyPaths,omitempty"`
	}
	namespace struct {
		Type string `json:"type"`
		Path string `json:"path,omitempty"`
	}
	resources struct {
		Devices []deviceRule `json:"devices,omitempty"`
		Memory  *memory      `json:"memory,omitempty"`
		CPU     *cpu         `json:"cpu,omitempty"`
		Pids    *pids        `json:"pids,omitempty"`
	}
	deviceRule struct {
		Allow  bool   `json:"allow"`
		Access string `json:"access,omitempty"`
	}
	memory struct {
		Limit *int64 `json:"limit,omitempty"`
		Swap  *int64 `json:"swap,omitempty"`
	}
	cpu struct {
		Quota  *int64  `json:"quota,omitempty"`
		Period *uint64 `json:"period,omitempty"`
	}
	pids struct {
		Limit int64 `json:"limit"`
	}
)

// imageConfig is the part of an OCI image config (config.json of an
// unpacked image) the runtime uses.
type imageConfig struct {
	Config struct {
		User       string   `json:"User"`
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
}

// readImage checks an unpacked image directory and reads its config.
func readImage(dir string) (imageConfig, error) {
	var ic imageConfig
	if dir == "" {
		return ic, fmt.Errorf("%w: no image given", runtime.ErrImage)
	}
	if st, err := os.Stat(filepath.Join(dir, "rootfs")); err != nil || !st.IsDir() {
		return ic, fmt.Errorf("%w: image %s has no rootfs directory", runtime.ErrImage, dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return ic, fmt.Errorf("%w: image %s: %w", runtime.ErrImage, dir, err)
	}
	if err := json.Unmarshal(data, &ic); err != nil {
		return ic, fmt.Errorf("%w: image %s: config.json: %w", runtime.ErrImage, dir, err)
	}
	return ic, nil
}

// defaultCaps is Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// capBits numbers the Linux capabilities (linux/capability.h).
var capBits = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
	"KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
	"SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21,
	"SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
	"SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
	"AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33,
	"SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
	"PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// CapabilityMask is the bit mask of capability names ("CAP_CHOWN" or
// "CHOWN"), as /proc/<pid>/status shows it (CapEff).
func CapabilityMask(names []string) (uint64, error) {
	var m uint64
	for _, n := range names {
		bit, ok := capBits[strings.TrimPrefix(strings.ToUpper(n), "CAP_")]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		m |= 1 << bit
	}
	return m, nil
}

// DefaultCapabilities is the capability set of a container with the
// default security profile.
func DefaultCapabilities() []string { return slices.Clone(defaultCaps) }

// allCaps lists every capability the kernel knows.
func allCaps() []string {
	last := 40
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	}
	var out []string
	for name, bit := range capBits {
		if bit <= last {
			out = append(out, "CAP_"+name)
		}
	}
	slices.Sort(out)
	return out
}

// capSet applies CapAdd and CapDrop to the default set.
func capSet(sec runtime.SecurityConfig) ([]string, error) {
	norm := func(names []string) ([]string, bool, error) {
		var out []string
		all := false
		for _, n := range names {
			u := strings.TrimPrefix(strings.ToUpper(n), "CAP_")
			if u == "ALL" {
				all = true
				continue
			}
			if _, ok := capBits[u]; !ok {
				return nil, false, fmt.Errorf("%w: unknown capability %q", runtime.ErrInvalid, n)
			}
			out = append(out, "CAP_"+u)
		}
		return out, all, nil
	}
	add, addAll, err := norm(sec.CapAdd)
	if err != nil {
		return nil, err
	}
	drop, dropAll, err := norm(sec.CapDrop)
	if err != nil {
		return nil, err
	}
	set := slices.Clone(defaultCaps)
	if addAll {
		set = allCaps()
	}
	if dropAll {
		set = nil
	}
	for _, c := range add {
		if !slices.Contains(set, c) {
			set = append(set, c)
		}
	}
	set = slices.DeleteFunc(set, func(c string) bool { return slices.Contains(drop, c) && !slices.Contains(add, c) })
	if set == nil {
		set = []string{}
	}
	return set, nil
}

// Spec defaults of `runc spec`.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

func defaultMounts() []specMount {
	return []specMount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// specInput is everything a container's spec is made from.
type specInput struct {
	cfg         runtime.ContainerConfig
	image       imageConfig
	rootfs      string // the container's root filesystem
	hostname    string
	netns       string            // network namespace to join
	ipcns       string            // IPC namespace to join
	shm         string            // the pod's /dev/shm
	etcFiles    map[string]string // container path -> host file (/etc/hosts, ...)
	cgroupsPath string
	swap        bool // the memory controller limits swap too
}

// buildSpec merges the image config and the container config as Kubernetes
// does and adds the default security profile.
func buildSpec(in specInput) (*spec, error) {
	cfg, img := in.cfg, in.image.Config
	var args []string
	switch {
	case len(cfg.Command) > 0:
		args = append(slices.Clone(cfg.Command), cfg.Args...)
	case len(cfg.Args) > 0:
		args = append(slices.Clone(img.Entrypoint), cfg.Args...)
	default:
		args = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: no command: the image has no entrypoint or cmd and none is configured", runtime.ErrInvalid)
	}
	env := mergeEnv(img.Env, cfg.Env)
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, fmt.Errorf("%w: working directory %q is not absolute", runtime.ErrInvalid, cwd)
	}
	u, err := resolveUser(in.rootfs, img.User, cfg.Security)
	if err != nil {
		return nil, err
	}
	caps, err := capSet(cfg.Security)
	if err != nil {
		return nil, err
	}
	mounts := defaultMounts()
	if in.shm != "" {
		for i, m := range mounts {
			if m.Destination == "/dev/shm" {
				mounts[i] = specMount{Destination: "/dev/shm", Type: "bind", Source: in.shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}}
			}
		}
	}
	for _, dst := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
		if src, ok := in.etcFiles[dst]; ok {
			opts := []string{"rbind", "rprivate"}
			if cfg.Security.ReadOnlyRootFS {
				opts = append(opts, "ro")
			}
			mounts = append(mounts, specMount{Destination: dst, Type: "bind", Source: src, Options: opts})
		}
	}
	for _, m := range cfg.Mounts {
		if m.ContainerPath == "" || !filepath.IsAbs(m.ContainerPath) {
			return nil, fmt.Errorf("%w: mount of %s: container path %q is not absolute", runtime.ErrInvalid, m.HostPath, m.ContainerPath)
		}
		if _, err := os.Stat(m.HostPath); err != nil {
			return nil, fmt.Errorf("%w: mount: %w", runtime.ErrInvalid, err)
		}
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specMount{Destination: m.ContainerPath, Type: "bind", Source: m.HostPath, Options: opts})
	}
	res := &resources{Devices: []deviceRule{{Allow: false, Access: "rwm"}}}
	if cfg.MemoryLimitBytes > 0 {
		lim := cfg.MemoryLimitBytes
		res.Memory = &memory{Limit: &lim}
		if in.swap {
			swap := lim
			res.Memory.Swap = &swap
		}
	}
	if cfg.CPUMilli > 0 {
		period := uint64(100000)
		quota := cfg.CPUMilli * int64(period) / 1000
		res.CPU = &cpu{Quota: &quota, Period: &period}
	}
	if cfg.PidsLimit > 0 {
		res.Pids = &pids{Limit: cfg.PidsLimit}
	}
	ns := []namespace{{Type: "pid"}, {Type: "ipc", Path: in.ipcns}, {Type: "uts"}, {Type: "mount"}, {Type: "network", Path: in.netns}}
	return &spec{
		Version: "1.0.2",
		Process: &process{
			Terminal: false,
			User:     u,
			Args:     args,
			Env:      env,
			Cwd:      cwd,
			Capabilities: &capabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
				Inheritable: []string{}, Ambient: []string{},
			},
			Rlimits:         []rlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: !cfg.Security.AllowPrivilegeEscalation,
		},
		Root:     &specRoot{Path: in.rootfs, Readonly: cfg.Security.ReadOnlyRootFS},
		Hostname: in.hostname,
		Mounts:   mounts,
		Linux: &linux{
			Resources:     res,
			CgroupsPath:   in.cgroupsPath,
			Namespaces:    ns,
			MaskedPaths:   slices.Clone(maskedPaths),
			ReadonlyPaths: slices.Clone(readonlyPaths),
		},
	}, nil
}

// mergeEnv is the image environment with the container's variables
// replacing those of the same name and appended otherwise.
func mergeEnv(image []string, cfg []runtime.KeyValue) []string {
	out := slices.Clone(image)
	idx := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range cfg {
		s := kv.Key + "=" + kv.Value
		if i, ok := idx[kv.Key]; ok {
			out[i] = s
			continue
		}
		idx[kv.Key] = len(out)
		out = append(out, s)
	}
	return out
}

// resolveUser turns the image's "user[:group]" (numeric or names looked up
// in the rootfs' /etc/passwd and /etc/group) and the security context's
// RunAsUser/RunAsGroup into numeric IDs.
func resolveUser(rootfs, spec string, sec runtime.SecurityConfig) (user, error) {
	var u user
	name, group, hasGroup := strings.Cut(spec, ":")
	if name != "" {
		uid, gid, found, err := lookupPasswd(rootfs, name)
		if err != nil {
			return u, err
		}
		if !found {
			n, err := strconv.ParseUint(name, 10, 32)
			if err != nil {
				return u, fmt.Errorf("%w: user %q not found in the image's /etc/passwd", runtime.ErrInvalid, name)
			}
			uid = uint32(n)
		} else {
			u.GID = gid
		}
		u.UID = uid
	}
	if sec.RunAsUser != nil {
		if *sec.RunAsUser < 0 {
			return u, fmt.Errorf("%w: runAsUser %d", runtime.ErrInvalid, *sec.RunAsUser)
		}
		u.UID = uint32(*sec.RunAsUser)
		if !hasGroup && sec.RunAsGroup == nil {
			// The primary group follows the user when the image names none.
			u.GID = 0
			if _, gid, found, err := lookupPasswd(rootfs, strconv.FormatUint(uint64(u.UID), 10)); err == nil && found {
				u.GID = gid
			}
		}
	}
	if hasGroup && group != "" {
		gid, found, err := lookupGroup(rootfs, group)
		if err != nil {
			return u, err
		}
		if !found {
			n, err := strconv.ParseUint(group, 10, 32)
			if err != nil {
				return u, fmt.Errorf("%w: group %q not found in the image's /etc/group", runtime.ErrInvalid, group)
			}
			gid = uint32(n)
		}
		u.GID = gid
	}
	if sec.RunAsGroup != nil {
		if *sec.RunAsGroup < 0 {
			return u, fmt.Errorf("%w: runAsGroup %d", runtime.ErrInvalid, *sec.RunAsGroup)
		}
		u.GID = uint32(*sec.RunAsGroup)
	}
	return u, nil
}

// lookupPasswd finds a user by name or numeric ID in rootfs/etc/passwd.
func lookupPasswd(rootfs, name string) (uid, gid uint32, found bool, err error) {
	err = scanColonFile(filepath.Join(rootfs, "etc", "passwd"), func(f []string) bool {
		if len(f) < 4 || (f[0] != name && f[2] != name) {
			return false
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return false
		}
		uid, gid, found = uint32(u), uint32(g), true
		return true
	})
	return uid, gid, found, err
}

// lookupGroup finds a group by name or numeric ID in rootfs/etc/group.
func lookupGroup(rootfs, name string) (gid uint32, found bool, err error) {
	err = scanColonFile(filepath.Join(rootfs, "etc", "group"), func(f []string) bool {
		if len(f) < 3 || (f[0] != name && f[2] != name) {
			return false
		}
		g, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return false
		}
		gid, found = uint32(g), true
		return true
	})
	return gid, found, err
}

// scanColonFile calls match with the fields of each line until it returns
// true. A missing file has no lines.
func scanColonFile(path string, match func([]string) bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if match(strings.Split(line, ":")) {
			return nil
		}
	}
	return sc.Err()
}

// writeSpec writes the bundle's config.json. It is not synced: after a
// power cut the bundle's overlay is gone anyway, and a container that
// cannot be started again is replaced by the agent.
func writeSpec(bundle string, s *spec) error {
	return replaceJSON(filepath.Join(bundle, "config.json"), s)
}
