// Package logfile writes and reads container logs in the CRI log format:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>
//
// one record a line, where P marks a piece of a line longer than MaxLineBytes
// that continues in the next record and F ends a line. Files are rotated to
// path.1 ... path.N when they grow past a size limit.
package logfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// MaxLineBytes is the longest text one record holds; longer lines are split
// into partial (P) records.
const MaxLineBytes = 16 * 1024

// Stream names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Record tags.
const (
	tagFull    = "F"
	tagPartial = "P"
)

// Writer appends CRI log records to a file, rotating it by size. It is safe
// for concurrent use.
type Writer struct {
	path     string
	maxBytes int64
	maxFiles int
	now      func() time.Time

	mu      sync.Mutex
	f       *os.File
	size    int64
	pending map[string][]byte // unterminated output per stream
	closed  bool
}

// Open opens (appending) or creates the log file at path. When maxBytes > 0
// the file is rotated before a record would take it past maxBytes, keeping
// maxFiles old files as path.1 (newest) ... path.<maxFiles>.
func Open(path string, maxBytes int64, maxFiles int) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log file: %w", err)
	}
	return &Writer{
		path:     path,
		maxBytes: maxBytes,
		maxFiles: maxFiles,
		now:      time.Now,
		f:        f,
		size:     st.Size(),
		pending:  map[string][]byte{},
	}, nil
}

// Stream returns the writer for one stream ("stdout" or "stderr"). Output is
// recorded line by line; an unterminated last line is recorded on Close.
func (w *Writer) Stream(name string) io.Writer {
	return streamWriter{w: w, name: name}
}

type streamWriter struct {
	w    *Writer
	name string
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.w.write(s.name, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *Writer) write(stream string, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("write %s log: %w", stream, os.ErrClosed)
	}
	buf := append(w.pending[stream], p...)
	for {
		var err error
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && i <= MaxLineBytes {
			err = w.record(stream, tagFull, buf[:i])
			buf = buf[i+1:]
		} else if len(buf) > MaxLineBytes {
			err = w.record(stream, tagPartial, buf[:MaxLineBytes])
			buf = buf[MaxLineBytes:]
		} else {
			break
		}
		if err != nil {
			w.pending[stream] = append([]byte(nil), buf...)
			return err
		}
	}
	w.pending[stream] = append([]byte(nil), buf...)
	return nil
}

// record writes one record; w.mu is held.
func (w *Writer) record(stream, tag string, text []byte) error {
	line := make([]byte, 0, len(text)+48)
	line = w.now().UTC().AppendFormat(line, time.RFC3339Nano)
	line = append(line, ' ')
	line = append(line, stream...)
	line = append(line, ' ')
	line = append(line, tag...)
	line = append(line, ' ')
	line = append(line, text...)
	line = append(line, '\n')
	if w.maxBytes > 0 && w.size > 0 && w.size+int64(len(line)) > w.maxBytes {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(line)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write %s log: %w", stream, err)
	}
	return nil
}

// rotate shifts path.i to path.i+1, path to path.1 and starts a new file;
// w.mu is held.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("rotate log: close: %w", err)
	}
	if w.maxFiles <= 0 {
		if err := os.Remove(w.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate log: %w", err)
		}
	} else {
		_ = os.Remove(rotatedName(w.path, w.maxFiles))
		for i := w.maxFiles - 1; i >= 1; i-- {
			if err := os.Rename(rotatedName(w.path, i), rotatedName(w.path, i+1)); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("rotate log: %w", err)
			}
		}
		if err := os.Rename(w.path, rotatedName(w.path, 1)); err != nil {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate log: reopen: %w", err)
	}
	w.f, w.size = f, 0
	return nil
}

func rotatedName(path string, i int) string { return path + "." + strconv.Itoa(i) }

// Close records unterminated output as full lines and closes the file.
// Closing twice is a no-op.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	var firstErr error
	for _, stream := range []string{Stdout, Stderr} {
		if buf := w.pending[stream]; len(buf) > 0 {
			if err := w.record(stream, tagFull, buf); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	for stream, buf := range w.pending {
		if stream != Stdout && stream != Stderr && len(buf) > 0 {
			if err := w.record(stream, tagFull, buf); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	w.closed = true
	if err := w.f.Close(); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("close log file: %w", err)
	}
	return firstErr
}
