package edgectl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// Custom-columns output formats, as kubectl's:
//
//	-o custom-columns=NAME:.metadata.name,NODE:.spec.nodeName
//	-o custom-columns-file=FILE   (a line of headers, a line of JSONPaths)
const (
	outputCustomColumns     = "custom-columns="
	outputCustomColumnsFile = "custom-columns-file="
)

// noneValue is printed for a column with no value.
const noneValue = "<none>"

// customColumns is a parsed custom-columns spec.
type customColumns struct {
	headers []string
	paths   []jsonPath
}

// parseCustomColumnsFormat parses format when it is a custom-columns
// format; ok is false for any other format.
func parseCustomColumnsFormat(format string) (cc *customColumns, ok bool, err error) {
	if spec, found := strings.CutPrefix(format, outputCustomColumns); found {
		cc, err := parseCustomColumns(spec)
		return cc, true, err
	}
	if file, found := strings.CutPrefix(format, outputCustomColumnsFile); found {
		cc, err := readCustomColumnsFile(file)
		return cc, true, err
	}
	return nil, false, nil
}

// parseCustomColumns reads HEADER:JSONPATH[,HEADER:JSONPATH...].
func parseCustomColumns(spec string) (*customColumns, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("custom-columns format specified but no custom columns given: want -o custom-columns=HEADER:.json.path[,...]")
	}
	cc := &customColumns{}
	for i, col := range strings.Split(spec, ",") {
		header, path, ok := strings.Cut(col, ":")
		if !ok || strings.TrimSpace(header) == "" || strings.TrimSpace(path) == "" {
			return nil, fmt.Errorf("custom-columns: column %d %q: want HEADER:JSONPATH, e.g. NAME:.metadata.name", i+1, col)
		}
		if err := cc.add(i+1, strings.TrimSpace(header), strings.TrimSpace(path)); err != nil {
			return nil, err
		}
	}
	return cc, nil
}

// readCustomColumnsFile reads kubectl's custom-columns file: a line of
// headers and a line of JSONPaths, separated by blanks.
func readCustomColumnsFile(path string) (*customColumns, error) {
	if path == "" {
		return nil, fmt.Errorf("custom-columns-file: give a file: -o custom-columns-file=FILE")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("custom-columns-file: %w", err)
	}
	return parseCustomColumnsTemplate(path, data)
}

func parseCustomColumnsTemplate(path string, data []byte) (*customColumns, error) {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("custom-columns-file %s: %w", path, err)
	}
	if len(lines) != 2 {
		return nil, fmt.Errorf("custom-columns-file %s: want 2 lines (headers, then JSONPaths), found %d", path, len(lines))
	}
	headers, paths := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(headers) != len(paths) {
		return nil, fmt.Errorf("custom-columns-file %s: %d headers but %d JSONPaths", path, len(headers), len(paths))
	}
	cc := &customColumns{}
	for i := range headers {
		if err := cc.add(i+1, headers[i], paths[i]); err != nil {
			return nil, fmt.Errorf("custom-columns-file %s: %w", path, err)
		}
	}
	return cc, nil
}

func (cc *customColumns) add(n int, header, path string) error {
	p, err := parseJSONPath(path)
	if err != nil {
		return fmt.Errorf("custom-columns: column %d %q: %w", n, header, err)
	}
	cc.headers = append(cc.headers, header)
	cc.paths = append(cc.paths, p)
	return nil
}

// print writes a row per object (Secrets redacted unless showSecrets),
// after the headers when header is set. Several values of one column are
// joined with commas; a column without a value shows <none>.
func (cc *customColumns) print(w io.Writer, objs []manifests.Object, header, showSecrets bool) error {
	tw := newTabWriter(w)
	if header {
		fmt.Fprintln(tw, strings.Join(cc.headers, "\t"))
	}
	for _, obj := range objs {
		data, err := encodeObjects([]manifests.Object{obj}, true, showSecrets)
		if err != nil {
			return fmt.Errorf("encode %s for custom-columns: %w", objectName(obj), err)
		}
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("decode %s for custom-columns: %w", objectName(obj), err)
		}
		cells := make([]string, len(cc.paths))
		for i, p := range cc.paths {
			var vals []string
			for _, v := range p.eval(doc) {
				if v == nil {
					continue
				}
				vals = append(vals, formatValue(v))
			}
			if len(vals) == 0 {
				cells[i] = noneValue
			} else {
				cells[i] = strings.Join(vals, ",")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// isCustomColumns reports whether format is one of the custom-columns formats.
func isCustomColumns(format string) bool {
	return strings.HasPrefix(format, outputCustomColumns) || strings.HasPrefix(format, outputCustomColumnsFile)
}
