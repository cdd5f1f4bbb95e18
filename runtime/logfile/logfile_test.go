package logfile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var recordRE = regexp.MustCompile(`^(\S+) (stdout|stderr) ([FP]) (.*)$`)

func readRecords(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		m := recordRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q is not a CRI record", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("timestamp %q: %v", m[1], err)
		}
		out = append(out, m[2:])
	}
	return out
}

func readAllText(t *testing.T, path string, opts ReadOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := Read(context.Background(), path, opts, &b); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return b.String()
}

func TestWriteFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, errw := w.Stream(Stdout), w.Stream(Stderr)
	fmt.Fprint(out, "one\ntw")
	fmt.Fprint(errw, "bad\n")
	fmt.Fprint(out, "o\nthree")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Write([]byte("late\n")); err == nil {
		t.Fatal("write after close succeeded")
	}
	got := readRecords(t, path)
	want := [][]string{
		{"stdout", "F", "one"},
		{"stderr", "F", "bad"},
		{"stdout", "F", "two"},
		{"stdout", "F", "three"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records = %v, want %v", got, want)
	}
	if text := readAllText(t, path, ReadOptions{}); text != "one\nbad\ntwo\nthree\n" {
		t.Fatalf("Read = %q", text)
	}
}

func TestLongLinesArePartial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 2*MaxLineBytes+10)
	fmt.Fprintf(w.Stream(Stdout), "%s\nshort\n", long)
	w.Close()
	recs := readRecords(t, path)
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 4", len(recs))
	}
	for i, tag := range []string{"P", "P", "F", "F"} {
		if recs[i][1] != tag {
			t.Fatalf("record %d tag %s, want %s", i, recs[i][1], tag)
		}
	}
	if len(recs[0][2]) != MaxLineBytes || len(recs[2][2]) != 10 {
		t.Fatalf("piece sizes %d, %d", len(recs[0][2]), len(recs[2][2]))
	}
	if text := readAllText(t, path, ReadOptions{}); text != long+"\nshort\n" {
		t.Fatalf("Read did not reassemble the long line (len %d)", len(text))
	}
	ts := readAllText(t, path, ReadOptions{Timestamps: true})
	lines := strings.Split(strings.TrimSuffix(ts, "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " "+long) || !strings.HasSuffix(lines[1], " short") {
		t.Fatalf("timestamps output wrong: %d lines", len(lines))
	}
	if _, err := time.Parse(time.RFC3339Nano, strings.Fields(lines[1])[0]); err != nil {
		t.Fatalf("timestamp prefix: %v", err)
	}
}

func TestRotationAndTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 200, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		fmt.Fprintf(w.Stream(Stdout), "line %02d\n", i)
	}
	w.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("missing %s: %v", p, err)
		}
		if st.Size() > 200 {
			t.Fatalf("%s has %d bytes, over the limit", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Fatal("more rotated files kept than asked")
	}
	text := readAllText(t, path, ReadOptions{})
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if lines[len(lines)-1] != "line 39" {
		t.Fatalf("last line %q", lines[len(lines)-1])
	}
	for i := 1; i < len(lines); i++ {
		if lines[i] <= lines[i-1] {
			t.Fatalf("lines out of order: %q after %q", lines[i], lines[i-1])
		}
	}
	if len(lines) >= 40 || len(lines) < 6 {
		t.Fatalf("kept %d lines", len(lines))
	}
	if got := readAllText(t, path, ReadOptions{TailLines: 3}); got != "line 37\nline 38\nline 39\n" {
		t.Fatalf("tail 3 = %q", got)
	}
	if got := readAllText(t, path, ReadOptions{TailLines: 1000}); got != text {
		t.Fatalf("tail 1000 = %q, want everything", got)
	}
}

func TestReadMissing(t *testing.T) {
	err := Read(context.Background(), filepath.Join(t.TempDir(), "none.log"), ReadOptions{}, &bytes.Buffer{})
	if !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("err = %v, want not exist", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// syncBuffer is a bytes.Buffer safe for a reader goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 300, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := w.Stream(Stdout)
	fmt.Fprintln(out, "before 1")
	fmt.Fprintln(out, "before 2")

	var buf syncBuffer
	var stop sync.Mutex
	stopped := false
	done := make(chan error, 1)
	go func() {
		done <- Read(context.Background(), path, ReadOptions{Follow: true, TailLines: 1, Stop: func() bool {
			stop.Lock()
			defer stop.Unlock()
			return stopped
		}}, &buf)
	}()
	waitFor(t, "tail line", func() bool { return buf.String() == "before 2\n" })
	var want strings.Builder
	want.WriteString("before 2\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(out, "after %02d\n", i)
		fmt.Fprintf(&want, "after %02d\n", i)
		if i%10 == 9 {
			// Give the follower a few polls between bursts, across rotations.
			n := i
			waitFor(t, "followed output", func() bool { return strings.Contains(buf.String(), fmt.Sprintf("after %02d\n", n)) })
		}
	}
	stop.Lock()
	stopped = true
	stop.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop")
	}
	w.Close()
	if buf.String() != want.String() {
		t.Fatalf("followed:\n%s\nwant:\n%s", buf.String(), want.String())
	}
}

func TestFollowStopsOnContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fmt.Fprintln(w.Stream(Stderr), "hi")
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuffer
	done := make(chan error, 1)
	go func() { done <- Read(ctx, path, ReadOptions{Follow: true}, &buf) }()
	waitFor(t, "first line", func() bool { return buf.String() == "hi\n" })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with the context")
	}
}

func TestConcurrentStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []string{Stdout, Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				fmt.Fprintf(w.Stream(s), "%s %d\n", s, i)
			}
		}()
	}
	wg.Wait()
	w.Close()
	recs := readRecords(t, path)
	if len(recs) != 400 {
		t.Fatalf("%d records, want 400", len(recs))
	}
	for _, r := range recs {
		if !strings.HasPrefix(r[2], r[0]+" ") {
			t.Fatalf("record %v mixes streams", r)
		}
	}
}
