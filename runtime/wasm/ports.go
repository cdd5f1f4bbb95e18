package wasm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental/sock"

	"github.com/edgeorch/edgeorch/runtime"
)

// firstFD is the first file descriptor after stdin, stdout and stderr.
const firstFD = 3

// checkPorts validates a container's ports: TCP only, in range, a valid
// host address.
func checkPorts(ports []runtime.PortMapping) error {
	for _, p := range ports {
		if p.Protocol != "" && !strings.EqualFold(p.Protocol, "TCP") {
			return fmt.Errorf("%w: port %d/%s: wasm containers can only listen on TCP", runtime.ErrInvalid, p.ContainerPort, p.Protocol)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return fmt.Errorf("%w: port %d out of range", runtime.ErrInvalid, p.ContainerPort)
		}
		if p.HostIP != "" {
			if _, err := netip.ParseAddr(p.HostIP); err != nil {
				return fmt.Errorf("%w: port %d: host IP: %w", runtime.ErrInvalid, p.ContainerPort, err)
			}
		}
	}
	return nil
}

// listenAddr is where a port listens.
func listenAddr(p runtime.PortMapping) (host string, port int) {
	host = p.HostIP
	if host == "" {
		host = "0.0.0.0"
	}
	return host, int(p.ContainerPort)
}

// withListeners returns ctx carrying wazero's socket configuration, which
// makes instantiation open one TCP listener per port, preopened in order
// after the directories, and the environment telling the module about them.
// wazero opens the listeners inside the module's goroutine, where a failure
// would only show as the module ending, so every address is first bound
// here (all at once, which also catches duplicates) and released: a port
// already in use fails the start. The module owns its listeners; closing
// the module closes them.
func withListeners(ctx context.Context, ports []runtime.PortMapping, mounts int) (context.Context, []runtime.KeyValue, error) {
	if len(ports) == 0 {
		return ctx, nil, nil
	}
	cfg := sock.NewConfig()
	var probes []net.Listener
	defer func() {
		for _, l := range probes {
			_ = l.Close()
		}
	}()
	for _, p := range ports {
		host, port := listenAddr(p)
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, nil, fmt.Errorf("%w: port %d: %s is already in use", runtime.ErrInvalid, p.ContainerPort, addr)
			}
			return nil, nil, fmt.Errorf("%w: port %d: listen on %s: %w", runtime.ErrInvalid, p.ContainerPort, addr, err)
		}
		probes = append(probes, l)
		cfg = cfg.WithTCPListener(host, port)
	}
	env := []runtime.KeyValue{
		{Key: "LISTEN_FDS", Value: strconv.Itoa(len(ports))},
		{Key: "LISTEN_FDS_START", Value: strconv.Itoa(firstFD + mounts)},
	}
	return sock.WithConfig(ctx, cfg), env, nil
}

// checkImports fails when the module imports a function no host module
// provides. wazero opens a module's listeners before it links the imports
// and does not close them when linking fails, so a module with ports is
// checked up front.
func checkImports(rt wazero.Runtime, mod wazero.CompiledModule) error {
	for _, fn := range mod.ImportedFunctions() {
		modName, name, _ := fn.Import()
		host := rt.Module(modName)
		if host == nil {
			return fmt.Errorf("%w: module imports from %s, which is not provided", runtime.ErrInvalid, modName)
		}
		if _, ok := host.ExportedFunctionDefinitions()[name]; !ok {
			return fmt.Errorf("%w: module imports %s.%s, which is not provided", runtime.ErrInvalid, modName, name)
		}
	}
	return nil
}
