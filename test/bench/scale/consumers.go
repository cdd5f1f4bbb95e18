package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runNATS is the child of consumerCost: a bare NATS server with
// JetStream (as the control plane embeds it) whose memory nothing else
// shares. It prints its URL and runs until its stdin closes.
func runNATS(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "edge-scale-nats-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1})
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	fmt.Println(srv.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// consumerCost measures, on a NATS server of its own (a child process),
// what n agents cost it: n connections, then one core NATS subscription
// per agent (the notification shape), then one KV watcher per agent (an
// ordered JetStream consumer filtered on the node's assignments, as
// edgeagent does); and how fast the assignments bucket takes puts with
// and without the n consumers.
func consumerCost(ctx context.Context, n int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, "-role=nats")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats child: %w", err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		return errors.New("nats child exited before printing its URL")
	}
	url := strings.TrimSpace(sc.Text())
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	pid := cmd.Process.Pid

	admin, err := messaging.Connect(ctx, url, "scale-admin")
	if err != nil {
		return err
	}
	defer admin.Close()
	ajs, err := jetstream.New(admin)
	if err != nil {
		return err
	}
	b, err := messaging.OpenBuckets(ctx, ajs, messaging.BucketOptions{})
	if err != nil {
		return err
	}
	if err := raiseMaxConsumers(ctx, ajs, "KV_"+messaging.BucketAssignments, n); err != nil {
		return err
	}
	puts := func() (float64, error) {
		const m = 2000
		t0 := time.Now()
		for i := range m {
			key := messaging.AssignmentKey(fmt.Sprintf("sim-node-%d", i%n), "default", fmt.Sprintf("p-%d", i))
			if _, err := b.Assignments.Put(ctx, key, []byte(`{}`)); err != nil {
				return 0, fmt.Errorf("put %s: %w", key, err)
			}
		}
		return m / time.Since(t0).Seconds(), nil
	}
	base := readProc(pid)
	putsBefore, err := puts()
	if err != nil {
		return err
	}

	conns := make([]*nats.Conn, n)
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	t0 := time.Now()
	if err := parallel(ctx, n, func(i int) error {
		nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("sim-agent sim-node-%d", i)))
		conns[i] = nc
		return err
	}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	tConns := time.Since(t0)
	withConns := readProc(pid)

	t0 = time.Now()
	if err := parallel(ctx, n, func(i int) error {
		_, err := conns[i].Subscribe("edge.notify."+messaging.EncodeToken(fmt.Sprintf("sim-node-%d", i)), func(*nats.Msg) {})
		if err != nil {
			return err
		}
		return conns[i].FlushWithContext(ctx)
	}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	tSubs := time.Since(t0)
	withSubs := readProc(pid)

	watchers := make([]jetstream.KeyWatcher, n)
	defer func() {
		for _, w := range watchers {
			if w != nil {
				_ = w.Stop()
			}
		}
	}()
	t0 = time.Now()
	if err := parallel(ctx, n, func(i int) error {
		js, err := jetstream.New(conns[i])
		if err != nil {
			return err
		}
		kv, err := js.KeyValue(ctx, messaging.BucketAssignments)
		if err != nil {
			return err
		}
		w, err := kv.Watch(ctx, messaging.AssignmentFilter(fmt.Sprintf("sim-node-%d", i)))
		if err != nil {
			return err
		}
		watchers[i] = w
		for e := range w.Updates() { // the initial values, then nil
			if e == nil {
				return nil
			}
		}
		return errors.New("watcher closed")
	}); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	tWatch := time.Since(t0)
	withWatch := readProc(pid)
	putsAfter, err := puts()
	if err != nil {
		return err
	}
	fmt.Printf("    (NATS server of its own, %d agents: connections in %.1f s, +%.1f MiB)\n", n, tConns.Seconds(), mibDelta(withConns.rss, base.rss))
	figures.Record(fmt.Sprintf("scale: NATS server memory per agent connection (%d)", n), kibEach(withConns.rss, base.rss, n), "KiB", "")
	figures.Record(fmt.Sprintf("scale: create %d core NATS subscriptions, one per agent", n), tSubs.Seconds(), "s", "")
	figures.Record("scale: NATS server memory per core subscription", kibEach(withSubs.rss, withConns.rss, n), "KiB", "")
	figures.Record(fmt.Sprintf("scale: create %d KV watchers (JetStream consumers), one per agent", n), tWatch.Seconds(), "s", "")
	figures.Record("scale: NATS server memory per KV watcher", kibEach(withWatch.rss, withSubs.rss, n), "KiB", "")
	figures.Record("scale: assignment KV puts/s, no watchers", putsBefore, "/s", "")
	figures.Record(fmt.Sprintf("scale: assignment KV puts/s, %d watchers", n), putsAfter, "/s", "")
	return nil
}

func mibDelta(a, b uint64) float64 { return (float64(a) - float64(b)) / (1 << 20) }

func kibEach(a, b uint64, n int) float64 { return (float64(a) - float64(b)) / 1024 / float64(n) }

// parallel runs f(0..n-1) on 32 goroutines and returns the first error.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	idx := make(chan int)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		idx <- i
	}
	close(idx)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
