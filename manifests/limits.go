package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Count limits checked by Validate. Kubernetes bounds only the annotations
// (MaxAnnotationsBytes) and, through etcd, the size of an object; these
// bound what a small device would have to run or what a hostile manifest
// could make the control plane loop over (see docs/security.md).
const (
	MaxLabels         = 1000 // labels (or selector terms) of one map
	MaxContainers     = 100  // containers plus initContainers of a pod
	MaxVolumes        = 256  // volumes of a pod
	MaxEnv            = 1000 // env entries of one container
	MaxEnvFrom        = 100  // envFrom entries of one container
	MaxPorts          = 256  // ports of one container
	MaxVolumeMounts   = 256  // volumeMounts of one container
	MaxArgs           = 4096 // command plus args of one container
	maxReportedErrors = 50   // field errors reported for one object
	// MaxListItems bounds every list of a decoded object, before its
	// items are looked at.
	MaxListItems = 10000
	// MaxDocuments bounds the documents (empty ones included) and the
	// objects (List items included) of one input to Decode.
	MaxDocuments = 10000
	// MaxMapKeys bounds the keys of every map and object of a decoded
	// object (annotations, ConfigMap and Secret data, resources, ...),
	// counted while it is read; label maps get MaxLabels (mapKeyLimit).
	MaxMapKeys = 10000
)

// labelMapFields are the fields holding label maps (or selectors made of
// labels), limited to MaxLabels keys by Validate and, while decoding, by
// mapKeyLimit.
var labelMapFields = map[string]bool{"labels": true, "matchLabels": true, "nodeSelector": true, "selector": true}

// mapKeyLimit returns the most keys a map or object held by the field
// named field may have. It is checked while decoding, before the entries
// past the limit are read, so that a body of a few megabytes of tiny keys
// costs little time and memory.
func mapKeyLimit(field string) int {
	if labelMapFields[field] {
		return MaxLabels
	}
	return MaxMapKeys
}

// tooManyKeys is the error of a map or object with more than max keys.
func tooManyKeys(max int) string {
	return fmt.Sprintf("too many: more than %d keys, must have at most %d", max, max)
}

func tooManyDocuments() error {
	return fmt.Errorf("more than %d documents or objects in one input: split it into several files", MaxDocuments)
}

// tooMany reports a list or map of n items above limit max.
func (l *errList) tooMany(path string, n, max int) bool {
	if n <= max {
		return false
	}
	l.add(path, "too many: %d items, must have at most %d", n, max)
	return true
}

// podSpecWithinLimits checks the sizes of a pod spec's lists before the
// items are validated one by one; false means some list is too long and
// the items were not looked at.
func podSpecWithinLimits(l *errList, s *PodSpec, p string) bool {
	ok := !l.tooMany(p+".containers", len(s.Containers)+len(s.InitContainers), MaxContainers)
	ok = !l.tooMany(p+".volumes", len(s.Volumes), MaxVolumes) && ok
	for i := range s.InitContainers {
		ok = containerWithinLimits(l, &s.InitContainers[i], fmt.Sprintf("%s.initContainers[%d]", p, i)) && ok
	}
	for i := range s.Containers {
		ok = containerWithinLimits(l, &s.Containers[i], fmt.Sprintf("%s.containers[%d]", p, i)) && ok
	}
	return ok
}

func containerWithinLimits(l *errList, c *Container, p string) bool {
	ok := !l.tooMany(p+".env", len(c.Env), MaxEnv)
	ok = !l.tooMany(p+".envFrom", len(c.EnvFrom), MaxEnvFrom) && ok
	ok = !l.tooMany(p+".ports", len(c.Ports), MaxPorts) && ok
	ok = !l.tooMany(p+".volumeMounts", len(c.VolumeMounts), MaxVolumeMounts) && ok
	ok = !l.tooMany(p+".args", len(c.Command)+len(c.Args), MaxArgs) && ok
	return ok
}

// capErrors keeps the first maxReportedErrors errors of a long list, so
// that a hostile object cannot produce a megabyte of error text.
func capErrors(errs FieldErrors) FieldErrors {
	if len(errs) <= maxReportedErrors {
		return errs
	}
	more := len(errs) - maxReportedErrors
	return append(errs[:maxReportedErrors:maxReportedErrors], FieldError{Reason: fmt.Sprintf("and %d more errors", more)})
}

// InvalidUTF8 returns an error naming where data first holds bytes that are
// not UTF-8, or nil when it is valid: for JSON the field path (such as
// metadata.labels.app), for other input the line and byte offset.
func InvalidUTF8(data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	off := 0
	for off < len(data) {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		off += size
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		if path, key, isKey, ok := jsonPathAt(data, off); ok {
			switch {
			case isKey && path == "":
				return fmt.Errorf("invalid field name %+q: not valid UTF-8 (byte offset %d)", clip(key), off)
			case isKey:
				return fmt.Errorf("%s: invalid field name %+q: not valid UTF-8 (byte offset %d)", path, clip(key), off)
			case path == "":
				return fmt.Errorf("input is not valid UTF-8 (byte offset %d)", off)
			}
			return fmt.Errorf("%s: invalid value: not valid UTF-8 (byte offset %d)", path, off)
		}
	}
	line := bytes.Count(data[:off], []byte{'\n'}) + 1
	return fmt.Errorf("input is not valid UTF-8 (line %d, byte offset %d)", line, off)
}

// JSONPathAt returns the path of the JSON value of data that holds byte
// offset off, or starts at it (such as objects[3].metadata), "" for the
// top value or when the JSON breaks before off.
func JSONPathAt(data []byte, off int) string {
	path, _, _, ok := jsonPathAt(data, off)
	if !ok {
		return ""
	}
	return path
}

// jsonPathAt walks the JSON in data up to byte offset off and returns the
// path of the value that holds it, or, when a field name holds it, the
// path of the object and the name (isKey). ok is false when the JSON ends
// or breaks before off.
func jsonPathAt(data []byte, off int) (path, key string, isKey, ok bool) {
	type frame struct {
		array   bool
		idx     int
		name    string
		wantKey bool
	}
	var stack []frame
	build := func(withTop bool) string {
		var b []byte
		for i, f := range stack {
			if i == len(stack)-1 && !withTop {
				break
			}
			if f.array {
				b = append(b, '[')
				b = strconv.AppendInt(b, int64(f.idx), 10)
				b = append(b, ']')
				continue
			}
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, f.name...)
		}
		return string(b)
	}
	// valueDone moves the enclosing container past one value.
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].idx++
			} else {
				stack[n-1].wantKey = true
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false, false
		}
		past := dec.InputOffset() > int64(off)
		if d, isDelim := tok.(json.Delim); isDelim {
			switch d {
			case '{', '[':
				if past { // off is this object or array's opening byte
					return build(true), "", false, true
				}
				stack = append(stack, frame{array: d == '[', wantKey: d == '{'})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		}
		if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].wantKey {
			s, _ := tok.(string)
			stack[n-1].name, stack[n-1].wantKey = s, false
			if past {
				return build(false), s, true, true
			}
			continue
		}
		if past {
			return build(true), "", false, true
		}
		valueDone()
	}
}

// jsonPathError is a limit hit while reading JSON, with the path of the
// value that hit it (built while the recursion unwinds).
type jsonPathError struct {
	path   string
	reason string
}

func (e *jsonPathError) Error() string {
	if e.path == "" {
		return e.reason
	}
	return e.path + ": " + e.reason
}

// within prefixes the path of a jsonPathError with a field name, or with
// a list index when index >= 0; other errors are returned as they are.
func within(err error, name string, index int) error {
	pe, ok := err.(*jsonPathError)
	if !ok {
		return err
	}
	seg := name
	if index >= 0 {
		seg = "[" + strconv.Itoa(index) + "]"
	}
	switch {
	case pe.path == "":
		pe.path = seg
	case pe.path[0] == '[':
		pe.path = seg + pe.path
	default:
		pe.path = seg + "." + pe.path
	}
	return pe
}

// maxQuoted bounds a value repeated in an error message.
const maxQuoted = 100

// clip shortens a value repeated in an error message.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "..."
}

// validateEventName checks an Event's name: Kubernetes allows any path
// segment, but the objects are stored under their name as a NATS key
// token, so only alphanumerics, '-' and '.' are accepted (the names the
// event recorder makes, "<object>.<hex>", are).
func validateEventName(s string) error {
	if err := validatePathSegment(s); err != nil {
		return err
	}
	if len(s) > 253 {
		return fmt.Errorf("must be no more than 253 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("may contain only alphanumerics, '-' and '.'")
		}
	}
	return nil
}
