package logfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// PollInterval is how often Read looks for new output when following.
const PollInterval = 100 * time.Millisecond

// ReadOptions control Read.
type ReadOptions struct {
	// Follow keeps reading new output until ctx is done or Stop returns true.
	Follow bool
	// TailLines > 0 starts with the last TailLines lines; <= 0 starts with all.
	TailLines int
	// Timestamps prefixes every line with its RFC3339Nano timestamp and a space.
	Timestamps bool
	// Stop, when set, is asked after each poll while following; true ends Read.
	Stop func() bool
}

// Read writes the text of the log at path (and of its rotated files, oldest
// first) to w. Without Follow it returns at the end of the output; with
// Follow it polls for more until ctx is done or opts.Stop returns true, and
// then returns nil.
func Read(ctx context.Context, path string, opts ReadOptions, w io.Writer) error {
	var old []string
	for i := 1; ; i++ {
		name := rotatedName(path, i)
		if _, err := os.Stat(name); err != nil {
			break
		}
		old = append(old, name)
	}
	d := &decoder{ts: opts.Timestamps}
	var lines [][]byte // collected complete lines when tailing
	emit := func(b []byte) error {
		if opts.TailLines > 0 {
			lines = append(lines, b)
			if len(lines) > 2*opts.TailLines+64 {
				lines = append(lines[:0:0], lines[len(lines)-opts.TailLines:]...)
			}
			return nil
		}
		_, err := w.Write(b)
		return err
	}
	for i := len(old) - 1; i >= 0; i-- {
		data, err := os.ReadFile(old[i])
		if errors.Is(err, fs.ErrNotExist) {
			continue // rotated away meanwhile
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if err := d.feed(data, emit); err != nil {
			return err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		if len(old) > 0 && errors.Is(err, fs.ErrNotExist) && !opts.Follow {
			if err := d.flush(emit); err != nil {
				return err
			}
			return flushTail(w, lines, opts.TailLines)
		}
		return fmt.Errorf("read log: %w", err)
	}
	defer func() { f.Close() }()
	if err := readAll(f, d, emit); err != nil {
		return err
	}
	if !opts.Follow {
		if err := d.flush(emit); err != nil {
			return err
		}
		return flushTail(w, lines, opts.TailLines)
	}
	if err := flushTail(w, lines, opts.TailLines); err != nil {
		return err
	}
	direct := func(b []byte) error {
		_, err := w.Write(b)
		return err
	}
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := readAll(f, d, direct); err != nil {
			return err
		}
		// A rotation replaced the file: finish the old one, continue with the new.
		if cur, err := os.Stat(path); err == nil {
			if st, err := f.Stat(); err == nil && !os.SameFile(st, cur) {
				if err := readAll(f, d, direct); err != nil {
					return err
				}
				if err := readNewerRotated(path, st, d, direct); err != nil {
					return err
				}
				nf, err := os.Open(path)
				if err == nil {
					f.Close()
					f = nf
					if err := readAll(f, d, direct); err != nil {
						return err
					}
				}
			}
		}
		if opts.Stop != nil && opts.Stop() {
			// Pick up what was written up to the stop.
			if err := readAll(f, d, direct); err != nil {
				return err
			}
			return d.flush(direct)
		}
	}
}

// readNewerRotated reads the rotated files newer than the one described by
// st (which the follower has finished), oldest first: several rotations may
// have happened between two polls.
func readNewerRotated(path string, st os.FileInfo, d *decoder, emit func([]byte) error) error {
	k := 0
	for i := 1; ; i++ {
		rst, err := os.Stat(rotatedName(path, i))
		if err != nil {
			break
		}
		if os.SameFile(st, rst) {
			k = i
			break
		}
	}
	for i := k - 1; i >= 1; i-- {
		data, err := os.ReadFile(rotatedName(path, i))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if err := d.feed(data, emit); err != nil {
			return err
		}
	}
	return nil
}

func flushTail(w io.Writer, lines [][]byte, n int) error {
	if n <= 0 {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		if _, err := w.Write(l); err != nil {
			return err
		}
	}
	return nil
}

func readAll(f *os.File, d *decoder, emit func([]byte) error) error {
	r := bufio.NewReaderSize(f, 64*1024)
	buf := make([]byte, 64*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if ferr := d.feed(buf[:n], emit); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
	}
}

// decoder turns CRI records into text lines. It holds an incomplete record
// (the writer may be half way through it) and the pieces of a partial line.
type decoder struct {
	ts      bool
	rec     []byte // bytes of an unterminated record
	line    []byte // text of the current logical line so far
	started bool   // line has begun (after a P record)
}

func (d *decoder) feed(data []byte, emit func([]byte) error) error {
	d.rec = append(d.rec, data...)
	for {
		i := bytes.IndexByte(d.rec, '\n')
		if i < 0 {
			break
		}
		if err := d.record(d.rec[:i], emit); err != nil {
			return err
		}
		d.rec = d.rec[i+1:]
	}
	d.rec = append([]byte(nil), d.rec...)
	return nil
}

// flush ends the output: a dangling partial line is emitted as it is.
func (d *decoder) flush(emit func([]byte) error) error {
	d.rec = nil
	if !d.started {
		return nil
	}
	out := append(d.line, '\n')
	d.line, d.started = nil, false
	return emit(out)
}

func (d *decoder) record(rec []byte, emit func([]byte) error) error {
	ts, rest, ok := bytes.Cut(rec, []byte{' '})
	if !ok {
		return nil // not a record; skip
	}
	_, rest, ok = bytes.Cut(rest, []byte{' '}) // stream
	if !ok {
		return nil
	}
	tag, text, _ := bytes.Cut(rest, []byte{' '})
	if !d.started {
		d.line = d.line[:0]
		if d.ts {
			d.line = append(d.line, ts...)
			d.line = append(d.line, ' ')
		}
		d.started = true
	}
	d.line = append(d.line, text...)
	if string(tag) == tagPartial {
		return nil
	}
	out := append([]byte(nil), d.line...)
	out = append(out, '\n')
	d.started = false
	d.line = d.line[:0]
	return emit(out)
}
