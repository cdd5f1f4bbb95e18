package edgeagent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// systemd's notification protocol (sd_notify(3)), without cgo or libsystemd:
// one datagram per message on the unix socket named by NOTIFY_SOCKET. Under
// a Type=notify unit the agent sends READY=1 once its pods are started from
// the local state and its loops run (the control plane need not be
// reachable: a device boots offline), WATCHDOG=1 every half WATCHDOG_USEC
// while its health check passes, and STOPPING=1 on the way out.

// sdNotifier sends messages to systemd's notification socket.
type sdNotifier struct {
	addr *net.UnixAddr
}

// newSDNotifier returns a notifier for the socket in NOTIFY_SOCKET (a path,
// or "@name" for an abstract socket); nil when socket is empty (not started
// by systemd, or not a Type=notify unit).
func newSDNotifier(socket string) (*sdNotifier, error) {
	if socket == "" {
		return nil, nil
	}
	if socket[0] != '/' && socket[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: want an absolute path or @abstract name", socket)
	}
	return &sdNotifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// notify sends one message, e.g. "READY=1" or "WATCHDOG=1".
func (n *sdNotifier) notify(msg string) error {
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// watchdogInterval reads WATCHDOG_USEC (and WATCHDOG_PID, which must be
// this process when set): how often systemd expects WATCHDOG=1; 0 when the
// unit has no WatchdogSec=.
func watchdogInterval(usec, pid string) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID %q: %w", pid, err)
		}
		if p != os.Getpid() {
			return 0, nil // meant for another process
		}
	}
	us, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || us == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds", usec)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// notifySystemd tells systemd the agent is ready and, with WatchdogSec=,
// keeps the watchdog fed while healthCheck passes, until ctx is done. It
// does nothing outside a Type=notify unit.
func (a *Agent) notifySystemd(ctx context.Context) {
	n, err := newSDNotifier(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		a.log.Warn("systemd notification disabled", "err", err)
		return
	}
	if n == nil {
		return
	}
	interval, err := watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"))
	if err != nil {
		a.log.Warn("systemd watchdog disabled", "err", err)
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		tick = t.C
	}
	runNotify(ctx, n, tick, a.healthCheck, a.log)
}

// runNotify sends READY=1, then on every tick WATCHDOG=1 when check passes
// (a STATUS= line naming the failure when it does not, so that systemd
// restarts the agent once WatchdogSec passes without one), and STOPPING=1
// when ctx is done. A check that hangs withholds WATCHDOG=1 as well.
func runNotify(ctx context.Context, n *sdNotifier, tick <-chan time.Time, check func(context.Context) error, log *slog.Logger) {
	if err := n.notify("READY=1\nSTATUS=running"); err != nil {
		log.Warn("notify systemd", "err", err)
	}
	healthy := true
	for {
		select {
		case <-ctx.Done():
			if err := n.notify("STOPPING=1"); err != nil {
				log.Debug("notify systemd", "err", err)
			}
			return
		case <-tick:
		}
		msg := "WATCHDOG=1"
		if err := check(ctx); err != nil {
			if ctx.Err() != nil {
				continue // stopping: checks fail on the way out
			}
			log.Error("agent unhealthy: withholding the systemd watchdog ping", "err", err)
			healthy = false
			msg = "STATUS=unhealthy: " + err.Error()
		} else if !healthy {
			healthy = true
			msg = "WATCHDOG=1\nSTATUS=running"
		}
		if err := n.notify(msg); err != nil {
			log.Warn("notify systemd", "err", err)
		}
	}
}

// healthCheck is what the systemd watchdog vouches for: the agent's shared
// structures are not deadlocked and its state database answers a read. It
// blocks while they do not, which withholds the watchdog ping as well. Being
// offline is healthy (edge autonomy): a restart would not bring the link
// back.
func (a *Agent) healthCheck(context.Context) error {
	// Empty critical sections: only that the locks can be taken matters.
	a.mu.Lock()
	a.mu.Unlock() //nolint:staticcheck
	a.st.mu.Lock()
	a.st.mu.Unlock() //nolint:staticcheck
	if _, err := a.db.Meta(metaAssignmentsRevision); err != nil {
		return fmt.Errorf("read local state: %w", err)
	}
	return nil
}
