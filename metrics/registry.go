package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Registry holds metric families and writes them.
type Registry struct {
	mu   sync.RWMutex
	fams map[string]Collector
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{fams: map[string]Collector{}} }

// Default is the process-wide registry: the families of packages that
// exist once per process (the controllers' loop, the API server) register
// in it, with the Go runtime and process figures.
var Default = func() *Registry {
	r := NewRegistry()
	r.MustRegister(NewProcessCollectors()...)
	return r
}()

// Register adds collectors. A family whose name is already registered is
// an error, and nothing is added.
func (r *Registry) Register(cs ...Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range cs {
		name := c.desc().name
		if _, ok := r.fams[name]; ok || seen[name] {
			return fmt.Errorf("metrics: register %s: a family of that name is already registered", name)
		}
		seen[name] = true
	}
	for _, c := range cs {
		r.fams[c.desc().name] = c
	}
	return nil
}

// MustRegister is Register that panics on error (for package init).
func (r *Registry) MustRegister(cs ...Collector) {
	if err := r.Register(cs...); err != nil {
		panic(err)
	}
}

// Unregister removes the family of c, if c is the registered one.
func (r *Registry) Unregister(c Collector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fams[c.desc().name] == c {
		delete(r.fams, c.desc().name)
	}
}

func (r *Registry) collectors() []Collector {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Collector, 0, len(r.fams))
	for _, c := range r.fams {
		out = append(out, c)
	}
	return out
}

// WriteText writes the families of regs in the text exposition format
// (0.0.4), sorted by name, each series sorted by its label values. A name
// registered in two of regs is an error (nothing is written).
func WriteText(w io.Writer, regs ...*Registry) error {
	var all []Collector
	for _, r := range regs {
		all = append(all, r.collectors()...)
	}
	slices.SortFunc(all, func(a, b Collector) int { return strings.Compare(a.desc().name, b.desc().name) })
	for i := 1; i < len(all); i++ {
		if all[i].desc().name == all[i-1].desc().name {
			return fmt.Errorf("metrics: family %s is registered twice", all[i].desc().name)
		}
	}
	bw := bufio.NewWriter(w)
	for _, c := range all {
		writeFamily(bw, c)
	}
	return bw.Flush()
}

// textWriter builds each line in a reused buffer.
type textWriter struct {
	w    *bufio.Writer
	line []byte
}

func writeFamily(w *bufio.Writer, c Collector) {
	tw := &textWriter{w: w, line: make([]byte, 0, 256)}
	d := c.desc()
	w.WriteString("# HELP ")
	w.WriteString(d.name)
	w.WriteByte(' ')
	w.WriteString(escapeHelp(d.help))
	w.WriteString("\n# TYPE ")
	w.WriteString(d.name)
	w.WriteByte(' ')
	w.WriteString(d.typ)
	w.WriteByte('\n')
	c.collect(func(s sample) {
		if s.hist == nil {
			tw.sample(d.name, "", d.labels, s.labelValues, false, 0, s.value)
			return
		}
		h := s.hist
		for i, ub := range h.upper {
			tw.sample(d.name, "_bucket", d.labels, s.labelValues, true, ub, float64(h.cumulative[i]))
		}
		tw.sample(d.name, "_bucket", d.labels, s.labelValues, true, math.Inf(1), float64(h.count))
		tw.sample(d.name, "_sum", d.labels, s.labelValues, false, 0, h.sum)
		tw.sample(d.name, "_count", d.labels, s.labelValues, false, 0, float64(h.count))
	})
}

// sample writes one line: name+suffix, the labels (and le when withLE),
// the value.
func (tw *textWriter) sample(name, suffix string, labels, values []string, withLE bool, le, v float64) {
	b := append(tw.line[:0], name...)
	b = append(b, suffix...)
	if len(labels) > 0 || withLE {
		b = append(b, '{')
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l...)
			b = append(b, `="`...)
			b = appendEscapedLabel(b, values[i])
			b = append(b, '"')
		}
		if withLE {
			if len(labels) > 0 {
				b = append(b, ',')
			}
			b = append(b, `le="`...)
			b = appendFloat(b, le)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	b = append(b, '\n')
	tw.w.Write(b)
	tw.line = b
}

// appendEscapedLabel appends a label value with backslash, double quote
// and line feed escaped.
func appendEscapedLabel(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// appendFloat appends a value as Prometheus reads it (+Inf, -Inf, NaN).
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// Handler serves the families of regs in the text format on GET and HEAD.
func Handler(regs ...*Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "metrics: method "+r.Method+" not allowed (use GET)", http.StatusMethodNotAllowed)
			return
		}
		var buf bytes.Buffer
		if err := WriteText(&buf, regs...); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(buf.Bytes())
	})
}
