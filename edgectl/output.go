package edgectl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
	"gopkg.in/yaml.v3"
)

// Output formats accepted by -o.
const (
	outputTable = ""
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
	outputName  = "name"
	// outputJSONPath prefixes a template: -o jsonpath={.items[*].metadata.name}.
	outputJSONPath = "jsonpath="
)

func validOutput(format string) error {
	switch format {
	case outputTable, outputWide, outputJSON, outputYAML, outputName:
		return nil
	}
	if expr, ok := strings.CutPrefix(format, outputJSONPath); ok {
		if _, err := parseJSONPath(expr); err != nil {
			return err
		}
		return nil
	}
	if _, ok, err := parseCustomColumnsFormat(format); ok {
		return err
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: custom-columns=HEADER:.json.path,...,custom-columns-file=FILE,json,jsonpath={...},name,wide,yaml", format)
}

// listObject is the kubectl List wrapper printed for several objects.
type listObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []any  `json:"items"`
	Metadata   struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

// redactedSecret is a Secret as printed without --show-secrets: each
// value of data and stringData replaced by "<redacted: N bytes>".
type redactedSecret struct {
	manifests.TypeMeta `json:",inline"`
	ObjectMeta         manifests.ObjectMeta `json:"metadata"`
	Type               string               `json:"type,omitempty"`
	Data               map[string]string    `json:"data,omitempty"`
	StringData         map[string]string    `json:"stringData,omitempty"`
	Immutable          *bool                `json:"immutable,omitempty"`
}

// redactedValue is what is printed instead of a secret value of n bytes.
func redactedValue(n int) string { return fmt.Sprintf("<redacted: %d bytes>", n) }

// printable is obj as printed: a Secret redacted unless showSecrets.
func printable(obj manifests.Object, showSecrets bool) any {
	s, ok := obj.(*manifests.Secret)
	if !ok || showSecrets {
		return obj
	}
	r := redactedSecret{TypeMeta: s.TypeMeta, ObjectMeta: s.ObjectMeta, Type: s.Type, Immutable: s.Immutable}
	if s.Data != nil {
		r.Data = make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			r.Data[k] = redactedValue(len(v))
		}
	}
	if s.StringData != nil {
		r.StringData = make(map[string]string, len(s.StringData))
		for k, v := range s.StringData {
			r.StringData[k] = redactedValue(len(v))
		}
	}
	return r
}

// encodeObjects renders one object (single) or a List as JSON, Secrets
// redacted unless showSecrets.
func encodeObjects(objs []manifests.Object, single, showSecrets bool) ([]byte, error) {
	for _, obj := range objs {
		if err := manifests.SetKind(obj); err != nil {
			return nil, err
		}
	}
	var v any
	if single && len(objs) == 1 {
		v = printable(objs[0], showSecrets)
	} else {
		l := listObject{APIVersion: "v1", Kind: "List", Items: make([]any, 0, len(objs))}
		for _, obj := range objs {
			l.Items = append(l.Items, printable(obj, showSecrets))
		}
		v = l
	}
	// Not escaping <, > and & keeps "<redacted: N bytes>" readable.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// printObjects writes objs as json, yaml or names, with the values of
// Secrets redacted.
func printObjects(w io.Writer, format string, objs []manifests.Object, single bool) error {
	return printObjectsShowing(w, format, objs, single, false)
}

// printObjectsShowing is printObjects that prints the values of Secrets
// when showSecrets.
func printObjectsShowing(w io.Writer, format string, objs []manifests.Object, single, showSecrets bool) error {
	switch format {
	case outputName:
		for _, obj := range objs {
			fmt.Fprintln(w, objectName(obj))
		}
		return nil
	case outputJSON:
		data, err := encodeObjects(objs, single, showSecrets)
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	case outputYAML:
		data, err := encodeObjects(objs, single, showSecrets)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		y, err := jsonToYAML(data)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		_, err = w.Write(y)
		return err
	}
	if expr, ok := strings.CutPrefix(format, outputJSONPath); ok {
		return printJSONPath(w, expr, objs, single, showSecrets)
	}
	if cc, ok, err := parseCustomColumnsFormat(format); ok {
		if err != nil {
			return err
		}
		return cc.print(w, objs, true, showSecrets)
	}
	return fmt.Errorf("output format %q cannot print objects", format)
}

// printJSONPath evaluates expr against the object (single) or the List, as
// kubectl does, and prints the values without a trailing newline.
func printJSONPath(w io.Writer, expr string, objs []manifests.Object, single, showSecrets bool) error {
	p, err := parseJSONPath(expr)
	if err != nil {
		return err
	}
	data, err := encodeObjects(objs, single, showSecrets)
	if err != nil {
		return fmt.Errorf("encode for jsonpath: %w", err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("decode for jsonpath: %w", err)
	}
	_, err = io.WriteString(w, p.format(doc))
	return err
}

// jsonToYAML converts a JSON document to YAML with sorted keys, as kubectl prints it.
func jsonToYAML(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(fixNumbers(v)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fixNumbers turns json.Number into int64 or float64 so YAML prints them bare.
func fixNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = fixNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = fixNumbers(e)
		}
	case json.Number:
		if n, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return n
		}
		if f, err := strconv.ParseFloat(string(t), 64); err == nil {
			return f
		}
		return string(t)
	}
	return v
}
