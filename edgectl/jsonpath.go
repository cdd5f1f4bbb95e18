package edgectl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// jsonPath is a small subset of kubectl's JSONPath: `{.a.b[0].c}`, `{.items[*].metadata.name}`
// and filters on a list field `{.status.conditions[?(@.type=="Ready")].status}`.
type jsonPath struct {
	steps []pathStep
}

type pathStep struct {
	field  string // map key; "" for an index or filter step
	index  int    // list index, when isIdx
	isIdx  bool
	all    bool // [*]
	filter *pathFilter
}

type pathFilter struct {
	field string
	value string
}

// parseJSONPath parses an expression with or without the surrounding braces.
func parseJSONPath(expr string) (jsonPath, error) {
	s := strings.TrimSpace(expr)
	if strings.HasPrefix(s, "{") {
		if !strings.HasSuffix(s, "}") {
			return jsonPath{}, fmt.Errorf("jsonpath %q: unclosed '{'", expr)
		}
		s = s[1 : len(s)-1]
	}
	if !strings.HasPrefix(s, ".") {
		return jsonPath{}, fmt.Errorf("jsonpath %q: must start with '.'", expr)
	}
	var p jsonPath
	for s != "" {
		switch s[0] {
		case '.':
			s = s[1:]
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return jsonPath{}, fmt.Errorf("jsonpath %q: empty field name", expr)
			}
			p.steps = append(p.steps, pathStep{field: s[:end]})
			s = s[end:]
		case '[':
			end := strings.Index(s, "]")
			if end < 0 {
				return jsonPath{}, fmt.Errorf("jsonpath %q: unclosed '['", expr)
			}
			inner := s[1:end]
			s = s[end+1:]
			if strings.HasPrefix(inner, "?(") {
				f, err := parseFilter(inner)
				if err != nil {
					return jsonPath{}, fmt.Errorf("jsonpath %q: %w", expr, err)
				}
				p.steps = append(p.steps, pathStep{filter: f})
				continue
			}
			if inner == "*" {
				p.steps = append(p.steps, pathStep{all: true})
				continue
			}
			n, err := strconv.Atoi(inner)
			if err != nil || n < 0 {
				return jsonPath{}, fmt.Errorf("jsonpath %q: index %q is not a non-negative number", expr, inner)
			}
			p.steps = append(p.steps, pathStep{index: n, isIdx: true})
		default:
			return jsonPath{}, fmt.Errorf("jsonpath %q: unexpected %q", expr, s[0])
		}
	}
	return p, nil
}

// parseFilter reads `?(@.field=="value")`.
func parseFilter(inner string) (*pathFilter, error) {
	if !strings.HasSuffix(inner, ")") || !strings.HasPrefix(inner, "?(@.") {
		return nil, fmt.Errorf("filter %q: want ?(@.field==\"value\")", inner)
	}
	body := inner[len("?(@.") : len(inner)-1]
	field, value, ok := strings.Cut(body, "==")
	if !ok {
		return nil, fmt.Errorf("filter %q: only == is supported", inner)
	}
	value = strings.TrimSpace(value)
	value = strings.Trim(value, `"'`)
	return &pathFilter{field: strings.TrimSpace(field), value: value}, nil
}

// eval returns every value the path selects (several with [*] or a filter).
func (p jsonPath) eval(doc any) []any {
	cur := []any{doc}
	for _, st := range p.steps {
		var next []any
		for _, v := range cur {
			next = append(next, st.apply(v)...)
		}
		cur = next
	}
	return cur
}

// apply returns what one step selects from v.
func (st pathStep) apply(v any) []any {
	switch {
	case st.field != "":
		if m, ok := v.(map[string]any); ok {
			if e, ok := m[st.field]; ok {
				return []any{e}
			}
		}
	case st.all:
		l, _ := v.([]any)
		return l
	case st.isIdx:
		if l, ok := v.([]any); ok && st.index < len(l) {
			return []any{l[st.index]}
		}
	case st.filter != nil:
		l, _ := v.([]any)
		var out []any
		for _, e := range l {
			if m, ok := e.(map[string]any); ok && formatValue(m[st.filter.field]) == st.filter.value {
				out = append(out, e)
			}
		}
		return out
	}
	return nil
}

// format prints the selected values separated by spaces, as kubectl does.
func (p jsonPath) format(doc any) string {
	vals := p.eval(doc)
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = formatValue(v)
	}
	return strings.Join(parts, " ")
}

// formatValue prints a JSON value as kubectl's jsonpath output does.
func formatValue(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case map[string]any, []any:
		b, _ := json.Marshal(t)
		return string(b)
	default:
		return fmt.Sprint(t)
	}
}
