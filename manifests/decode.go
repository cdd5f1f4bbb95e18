package manifests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits applied to operator input, so that hostile manifests cannot make
// the decoder use unbounded memory or time.
const (
	MaxInputBytes      = 4 << 20 // whole input of Decode or DecodeJSONStrict
	MaxNestingDepth    = 64      // nested mappings and sequences
	MaxAliasExpansion  = 100000  // nodes reached through YAML aliases
	maxErrorsPerObject = 20
)

// DecodeError is a strict-decoding failure of one object.
type DecodeError struct {
	Document int    // 1-based position in a multi-document input; 0 for a single object
	Item     int    // 1-based position inside a "kind: List"; 0 otherwise
	Kind     string // kind of the object, when known
	Name     string // metadata.name of the object, when known
	Errs     FieldErrors
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	if e.Document > 0 {
		fmt.Fprintf(&b, "document %d", e.Document)
	}
	if e.Item > 0 {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "items[%d]", e.Item-1)
	}
	if e.Kind != "" {
		what := e.Kind
		if e.Name != "" {
			what += fmt.Sprintf(" %q", clip(e.Name))
		}
		if b.Len() > 0 {
			what = " (" + what + ")"
		}
		b.WriteString(what)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Errs.Error())
	return b.String()
}

// Decode strictly decodes operator input: one or more YAML documents
// separated by "---", or one or more JSON objects. Empty documents are
// skipped and "kind: List" documents are expanded into their items. Unknown
// fields, values of the wrong type, missing apiVersion or kind and
// unsupported kinds are errors naming the document and the field path.
func Decode(data []byte) ([]Object, error) {
	if err := checkInput(data); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		objs, err := decodeJSONStream(trimmed)
		var syn *json.SyntaxError
		if err != nil && (errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF)) {
			// Not JSON after all: a YAML flow mapping such as
			// "{apiVersion: v1, kind: Namespace, ...}" is valid input too.
			if yobjs, yerr := decodeYAMLStream(data); yerr == nil {
				return yobjs, nil
			}
		}
		return objs, err
	}
	return decodeYAMLStream(data)
}

// DecodeJSONStrict strictly decodes exactly one JSON object, with the same
// checks and errors as Decode.
func DecodeJSONStrict(raw []byte) (Object, error) {
	if err := checkInput(raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	node, err := jsonNode(dec, 0, "")
	if err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decode JSON: unexpected data after the object")
	}
	objs, err := decodeDocument(node, 0)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("decode JSON: want exactly one object, got %d", len(objs))
	}
	return objs[0], nil
}

func checkInput(data []byte) error {
	if len(data) > MaxInputBytes {
		return fmt.Errorf("input is %d bytes, more than the limit of %d", len(data), MaxInputBytes)
	}
	return InvalidUTF8(data)
}

func decodeYAMLStream(data []byte) (objs []Object, err error) {
	defer func() {
		if r := recover(); r != nil {
			objs, err = nil, fmt.Errorf("decode YAML: malformed input: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	doc := 0
	for read := 1; ; read++ {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("document %d: %w", doc+1, err)
		}
		if read > MaxDocuments {
			return nil, tooManyDocuments()
		}
		content := &n
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				continue
			}
			content = n.Content[0]
		}
		if content.Kind == 0 || (content.Kind == yaml.ScalarNode && content.Tag == "!!null") {
			continue // empty document
		}
		doc++
		got, err := decodeDocument(content, doc)
		if err != nil {
			return nil, err
		}
		if objs = append(objs, got...); len(objs) > MaxDocuments {
			return nil, tooManyDocuments()
		}
	}
}

func decodeJSONStream(data []byte) ([]Object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var objs []Object
	for doc := 1; ; doc++ {
		node, err := jsonNode(dec, 0, "")
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: decode JSON: %w", doc, err)
		}
		if doc > MaxDocuments {
			return nil, tooManyDocuments()
		}
		got, err := decodeDocument(node, doc)
		if err != nil {
			return nil, err
		}
		if objs = append(objs, got...); len(objs) > MaxDocuments {
			return nil, tooManyDocuments()
		}
	}
}

// jsonNode reads one JSON value from dec as a YAML node tree, so that
// JSON and YAML input share one strict walker (and key order is kept).
// field is the name of the field holding the value ("" for the top and for
// list items): it chooses the most keys an object may have (mapKeyLimit).
func jsonNode(dec *json.Decoder, depth int, field string) (*yaml.Node, error) {
	if depth > MaxNestingDepth {
		return nil, &jsonPathError{reason: fmt.Sprintf("nesting deeper than %d levels", MaxNestingDepth)}
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF && depth > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			limit := mapKeyLimit(field)
			for dec.More() {
				if len(n.Content) == 2*limit {
					// Refused before the rest is read, as for lists: a
					// map of tiny keys costs more to decode than to send.
					return nil, &jsonPathError{reason: tooManyKeys(limit)}
				}
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is not a string")
				}
				v, err := jsonNode(dec, depth+1, key)
				if err != nil {
					return nil, within(err, key, -1)
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				if len(n.Content) == MaxListItems {
					// Refused before the items are read: a long list of
					// small items costs more to tokenize than to send.
					return nil, &jsonPathError{reason: fmt.Sprintf("too many: more than %d items", MaxListItems)}
				}
				v, err := jsonNode(dec, depth+1, "")
				if err != nil {
					return nil, within(err, "", len(n.Content))
				}
				n.Content = append(n.Content, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %q", t)
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// decodeDocument decodes one top-level node: an object or a List of them.
func decodeDocument(n *yaml.Node, doc int) ([]Object, error) {
	w := &walker{}
	n = w.deref(n)
	if n == nil {
		return nil, &DecodeError{Document: doc, Errs: w.errs}
	}
	if n.Kind != yaml.MappingNode {
		return nil, &DecodeError{Document: doc, Errs: FieldErrors{{Reason: "expected an object (a mapping), got " + describe(n)}}}
	}
	apiVersion, kind, name := w.header(n)
	if kind == "List" {
		return w.decodeList(n, doc)
	}
	obj, err := w.decodeObject(n, apiVersion, kind)
	if err != nil {
		return nil, &DecodeError{Document: doc, Kind: kind, Name: name, Errs: err}
	}
	return []Object{obj}, nil
}

func (w *walker) decodeList(n *yaml.Node, doc int) ([]Object, error) {
	var items *yaml.Node
	itemsAliased := false
	for _, p := range w.pairs(n, "") {
		switch p.key {
		case "apiVersion":
			if v := w.deref(p.val); v == nil || v.Tag != "!!str" || v.Value != "v1" {
				w.errorf("apiVersion", "a List must have apiVersion v1")
			}
		case "kind":
		case "metadata":
			// list metadata (resourceVersion, continue) carries nothing to keep
		case "items":
			itemsAliased = p.val.Kind == yaml.AliasNode
			items = w.deref(p.val)
		default:
			w.errorf(p.key, "unknown field %q", p.key)
		}
	}
	if items != nil && items.Kind != yaml.SequenceNode && !isNull(items) {
		w.errorf("items", "expected a list, got %s", describe(items))
	}
	if len(w.errs) > 0 {
		return nil, &DecodeError{Document: doc, Kind: "List", Errs: w.errs}
	}
	var objs []Object
	if items == nil || isNull(items) {
		return nil, nil
	}
	if len(items.Content) > MaxDocuments {
		return nil, tooManyDocuments()
	}
	for i, it := range items.Content {
		iw := &walker{expanded: w.expanded}
		if itemsAliased || it.Kind == yaml.AliasNode {
			iw.inAlias = 1 // every node of a repeated item counts against the alias budget
			if !iw.count() {
				return nil, &DecodeError{Document: doc, Item: i + 1, Errs: iw.errs}
			}
		}
		it = iw.deref(it)
		if it == nil {
			return nil, &DecodeError{Document: doc, Item: i + 1, Errs: iw.errs}
		}
		if it.Kind != yaml.MappingNode {
			return nil, &DecodeError{Document: doc, Item: i + 1, Errs: FieldErrors{{Reason: "expected an object (a mapping), got " + describe(it)}}}
		}
		apiVersion, kind, name := iw.header(it)
		if kind == "List" {
			return nil, &DecodeError{Document: doc, Item: i + 1, Errs: FieldErrors{{Path: "kind", Reason: "a List cannot contain a List"}}}
		}
		obj, errs := iw.decodeObject(it, apiVersion, kind)
		if errs != nil {
			return nil, &DecodeError{Document: doc, Item: i + 1, Kind: kind, Name: name, Errs: errs}
		}
		w.expanded = iw.expanded
		objs = append(objs, obj)
	}
	return objs, nil
}

// header reads apiVersion, kind and metadata.name without checking them.
func (w *walker) header(n *yaml.Node) (apiVersion, kind, name string) {
	probe := &walker{expanded: w.expanded}
	// No key limit here: the walk that follows reports it, and the error
	// then names the kind and the object.
	for _, p := range probe.pairsUpTo(n, "", math.MaxInt) {
		v := probe.deref(p.val)
		if v == nil {
			continue
		}
		switch p.key {
		case "apiVersion":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!str" {
				apiVersion = v.Value
			}
		case "kind":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!str" {
				kind = v.Value
			}
		case "metadata":
			if v.Kind == yaml.MappingNode {
				for _, mp := range probe.pairsUpTo(v, "metadata", math.MaxInt) {
					if mv := probe.deref(mp.val); mp.key == "name" && mv != nil && mv.Kind == yaml.ScalarNode && mv.Tag == "!!str" {
						name = mv.Value
					}
				}
			}
		}
	}
	return apiVersion, kind, name
}

// decodeObject checks n against the Go type of its kind and decodes it.
func (w *walker) decodeObject(n *yaml.Node, apiVersion, kind string) (Object, FieldErrors) {
	switch {
	case apiVersion == "" && kind == "":
		w.errorf("apiVersion", "required")
		w.errorf("kind", "required")
	case apiVersion == "":
		w.errorf("apiVersion", "required")
	case kind == "":
		w.errorf("kind", "required")
	}
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	k, ok := lookupKind(kind)
	if !ok {
		hint := ""
		if k, err := KindForResource(kind); err == nil { // "deployment", "svc"
			hint = fmt.Sprintf(" (did you mean %s, apiVersion %s?)", k.Kind, k.APIVersion)
		}
		w.errorf("kind", "%s (%s) is not supported%s; supported kinds: %s (see docs/kinds.md)", kind, apiVersion, hint, strings.Join(kindNames(), ", "))
		return nil, w.errs
	}
	if k.APIVersion != apiVersion {
		w.errorf("apiVersion", "%q is not supported for kind %s (use %q)", apiVersion, kind, k.APIVersion)
		return nil, w.errs
	}
	obj := k.New()
	generic := w.value(n, reflect.TypeOf(obj).Elem(), "", 0)
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	raw, err := json.Marshal(generic)
	if err != nil {
		w.errorf("", "re-encode: %v", err)
		return nil, w.errs
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		w.errorf("", "%v", err)
		return nil, w.errs
	}
	return obj, nil
}

func lookupKind(kind string) (Kind, bool) {
	for _, k := range kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// walker converts a YAML node tree into plain Go values (maps, slices,
// strings, numbers) after checking every field against a Go type.
type walker struct {
	errs     FieldErrors
	expanded int  // nodes reached through aliases
	inAlias  int  // >0 while walking an alias target
	lenient  bool // unknown fields are dropped (status subtree)
	// aliasBomb is set once aliases expanded past MaxAliasExpansion.
	aliasBomb bool
}

func (w *walker) errorf(path, format string, args ...any) {
	if w.aliasBomb {
		return
	}
	if len(w.errs) == maxErrorsPerObject {
		w.errs = append(w.errs, FieldError{Reason: "too many errors, stopping"})
	}
	if len(w.errs) > maxErrorsPerObject {
		return
	}
	w.errs = append(w.errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (w *walker) full() bool { return w.aliasBomb || len(w.errs) > maxErrorsPerObject }

// deref follows aliases (a chain of at most MaxNestingDepth).
func (w *walker) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > MaxNestingDepth {
			w.errorf("", "alias chain too long")
			return nil
		}
		n = n.Alias
	}
	return n
}

// count charges one node against the alias budget while walking an alias
// target; it reports false once the budget is spent.
func (w *walker) count() bool {
	if w.inAlias == 0 {
		return true
	}
	w.expanded++
	if w.expanded <= MaxAliasExpansion {
		return true
	}
	if !w.aliasBomb {
		w.aliasBomb = true
		w.errs = FieldErrors{{Reason: fmt.Sprintf("YAML aliases expand to more than %d nodes", MaxAliasExpansion)}}
	}
	return false
}

type pair struct {
	key string
	val *yaml.Node
}

// pairs returns the key/value pairs of a mapping with merge keys ("<<")
// applied; explicit keys win over merged ones. Duplicate keys are errors,
// and so are more than MaxMapKeys keys.
func (w *walker) pairs(n *yaml.Node, path string) []pair {
	return w.pairsUpTo(n, path, MaxMapKeys)
}

// pairsUpTo is pairs with at most limit keys: past it, it reports the
// error and returns nil, without looking at the remaining entries.
func (w *walker) pairsUpTo(n *yaml.Node, path string, limit int) []pair {
	var out []pair
	seen := map[string]bool{}
	var merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn := w.deref(n.Content[i])
		v := n.Content[i+1]
		if kn == nil || !w.count() {
			return out
		}
		if kn.Kind != yaml.ScalarNode || kn.Tag == "!!null" {
			w.errorf(path, "mapping key must be a scalar, got %s", describe(kn))
			continue
		}
		if kn.Tag == "!!merge" {
			merged = append(merged, w.mergePairs(v, path, 0)...)
			continue
		}
		if seen[kn.Value] {
			w.errorf(join(path, kn.Value), "duplicate field %q", kn.Value)
			continue
		}
		if len(out) == limit {
			w.errorf(path, "%s", tooManyKeys(limit))
			return nil
		}
		seen[kn.Value] = true
		out = append(out, pair{kn.Value, v})
	}
	for _, p := range merged {
		if !seen[p.key] {
			if len(out) == limit {
				w.errorf(path, "%s", tooManyKeys(limit))
				return nil
			}
			seen[p.key] = true
			out = append(out, p)
		}
	}
	return out
}

func (w *walker) mergePairs(v *yaml.Node, path string, depth int) []pair {
	if depth > MaxNestingDepth {
		w.errorf(path, "merge nesting too deep")
		return nil
	}
	if v.Kind == yaml.AliasNode {
		w.inAlias++
		defer func() { w.inAlias-- }()
	}
	v = w.deref(v)
	if v == nil || !w.count() {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return w.pairs(v, path)
	case yaml.SequenceNode:
		var out []pair
		seen := map[string]bool{}
		for _, m := range v.Content {
			for _, p := range w.mergePairs(m, path, depth+1) {
				if !seen[p.key] { // earlier maps in the list win
					seen[p.key] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	w.errorf(path, "merge key (<<) needs a mapping or a list of mappings, got %s", describe(v))
	return nil
}

var (
	timeType        = reflect.TypeOf(time.Time{})
	quantityType    = reflect.TypeOf(Quantity(""))
	intOrStringType = reflect.TypeOf(IntOrString{})
	bytesType       = reflect.TypeOf([]byte(nil))
)

// value checks n against t and returns its plain form. A nil result with
// no error means "absent" (null).
func (w *walker) value(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if w.full() {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		w.inAlias++
		defer func() { w.inAlias-- }()
	}
	n = w.deref(n)
	if n == nil || !w.count() {
		return nil
	}
	if depth > MaxNestingDepth {
		w.errorf(path, "nesting deeper than %d levels", MaxNestingDepth)
		return nil
	}
	if isNull(n) {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType:
		return w.timeValue(n, path)
	case quantityType:
		return w.quantityValue(n, path)
	case intOrStringType:
		return w.intOrStringValue(n, path)
	case bytesType:
		return w.bytesValue(n, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		return w.structValue(n, t, path, depth)
	case reflect.Map:
		return w.mapValue(n, t, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.errorf(path, "expected a list, got %s", describe(n))
			return nil
		}
		if len(n.Content) > MaxListItems {
			w.errorf(path, "too many: %d items, must have at most %d", len(n.Content), MaxListItems)
			return nil
		}
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v := w.value(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
			out = append(out, v)
		}
		return out
	case reflect.String:
		// An unquoted date is a timestamp to YAML but a string to Kubernetes.
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!timestamp") {
			w.errorf(path, "expected string, got %s", describe(n))
			return nil
		}
		return n.Value
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.errorf(path, "expected boolean, got %s", describe(n))
			return nil
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			w.errorf(path, "expected boolean, got %s", describe(n))
			return nil
		}
		return b
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v, ok := w.intValue(n, path)
		if !ok {
			return nil
		}
		if reflect.Zero(t).OverflowInt(v) {
			w.errorf(path, "integer %d out of range", v)
			return nil
		}
		return v
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
			w.errorf(path, "expected number, got %s", describe(n))
			return nil
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			w.errorf(path, "expected a finite number, got %s", describe(n))
			return nil
		}
		return f
	}
	w.errorf(path, "unsupported field type %s", t)
	return nil
}

func (w *walker) intValue(n *yaml.Node, path string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		w.errorf(path, "expected integer, got %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		w.errorf(path, "integer %s out of range", n.Value)
		return 0, false
	}
	return v, true
}

func (w *walker) structValue(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if n.Kind != yaml.MappingNode {
		w.errorf(path, "expected an object, got %s", describe(n))
		return nil
	}
	fields := jsonFields(t)
	ps := w.pairs(n, path)
	out := make(map[string]any, len(ps))
	for _, p := range ps {
		fp := join(path, p.key)
		f, ok := fields[p.key]
		if !ok {
			if !w.lenient {
				w.errorf(fp, "unknown field %q", p.key)
			}
			continue
		}
		lenient := w.lenient
		if path == "" && p.key == "status" {
			// Status is written by agents and ignored on apply; manifests
			// exported from a cluster carry status fields this model lacks.
			w.lenient = true
		}
		v := w.value(p.val, f.typ, fp, depth+1)
		w.lenient = lenient
		if v == nil || (f.omitEmpty && f.typ.Kind() != reflect.Pointer && isEmpty(v)) {
			// Absent, or empty where encoding would omit it: leave the
			// field nil so that decoding and re-encoding agree. A pointer
			// to an empty struct ("emptyDir: {}") is kept: it is encoded
			// and it means something.
			continue
		}
		out[p.key] = v
	}
	return out
}

func (w *walker) mapValue(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if n.Kind != yaml.MappingNode {
		w.errorf(path, "expected a map, got %s", describe(n))
		return nil
	}
	ps := w.pairsUpTo(n, path, mapKeyLimit(path[strings.LastIndexByte(path, '.')+1:]))
	out := make(map[string]any, len(ps))
	for _, p := range ps {
		fp := path + "[" + p.key + "]"
		if t.Elem() == quantityType && isNull(w.deref(p.val)) {
			w.errorf(fp, "expected a quantity, got null")
			continue
		}
		v := w.value(p.val, t.Elem(), fp, depth+1)
		if v == nil {
			// A null map value decodes to the element's zero value.
			v = reflect.Zero(t.Elem()).Interface()
		}
		out[p.key] = v
	}
	return out
}

func (w *walker) timeValue(n *yaml.Node, path string) any {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!timestamp") {
		w.errorf(path, "expected an RFC 3339 time string, got %s", describe(n))
		return nil
	}
	tm, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		w.errorf(path, "expected an RFC 3339 time such as 2006-01-02T15:04:05Z, got %q", n.Value)
		return nil
	}
	if tm.Year() < 0 || tm.Year() > 9999 {
		w.errorf(path, "time %q out of range", n.Value)
		return nil
	}
	return n.Value
}

func (w *walker) quantityValue(n *yaml.Node, path string) any {
	if n.Kind != yaml.ScalarNode {
		w.errorf(path, "expected a quantity, got %s", describe(n))
		return nil
	}
	s := n.Value
	switch n.Tag {
	case "!!int":
		v, ok := w.intValue(n, path)
		if !ok {
			return nil
		}
		s = strconv.FormatInt(v, 10)
	case "!!str", "!!float":
	default:
		w.errorf(path, "expected a quantity, got %s", describe(n))
		return nil
	}
	q, err := ParseQuantity(s)
	if err != nil {
		w.errorf(path, "%v", err)
		return nil
	}
	return string(q)
}

func (w *walker) intOrStringValue(n *yaml.Node, path string) any {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		return n.Value
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		w.errorf(path, "expected integer or string, got %s", describe(n))
		return nil
	}
	v, ok := w.intValue(n, path)
	if !ok {
		return nil
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		w.errorf(path, "integer %d out of range", v)
		return nil
	}
	return v
}

func (w *walker) bytesValue(n *yaml.Node, path string) any {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		w.errorf(path, "expected a base64 string, got %s", describe(n))
		return nil
	}
	if _, err := base64.StdEncoding.DecodeString(n.Value); err != nil {
		w.errorf(path, "invalid base64 data: %v", err)
		return nil
	}
	return n.Value
}

type jsonField struct {
	typ       reflect.Type
	omitEmpty bool
}

var fieldCache sync.Map // reflect.Type -> map[string]jsonField

// jsonFields maps JSON field names of struct t (with inlined embedded
// structs) to their types. The result is shared: do not modify it.
func jsonFields(t reflect.Type) map[string]jsonField {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]jsonField)
	}
	f := buildJSONFields(t)
	fieldCache.Store(t, f)
	return f
}

func buildJSONFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = jsonField{typ: f.Type, omitEmpty: strings.Contains(","+opts+",", ",omitempty,")}
	}
	return out
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}

func isNull(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names a node's type and, for short scalars, its value, as in
// `string "http"` or `list`.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("string %q", v)
		case "!!int":
			return "integer " + v
		case "!!float":
			return "number " + v
		case "!!bool":
			return "boolean " + v
		case "!!null":
			return "null"
		case "!!timestamp":
			return "timestamp " + v
		}
		return fmt.Sprintf("%s %q", n.Tag, v)
	}
	return "unsupported YAML node"
}
