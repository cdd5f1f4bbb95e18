// Package metricstest scrapes and parses Prometheus text for tests, with
// Prometheus' own parser (github.com/prometheus/common/expfmt): it proves
// that what package metrics writes is what a Prometheus server reads. Only
// tests import it, so the parser never reaches a binary.
package metricstest

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families maps a metric family's name to the family.
type Families map[string]*dto.MetricFamily

// Parse parses text in the exposition format 0.0.4 with legacy
// (Prometheus 2) name validation, and checks that no family is written
// twice (the parser itself accepts a repeated family in some orders).
func Parse(text []byte) (Families, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(text), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			if seen[name] {
				return nil, fmt.Errorf("parse metrics: family %s written twice", name)
			}
			seen[name] = true
		}
	}
	return fams, nil
}

// Scrape GETs url (with a bearer token unless token is ""), checks the
// status and content type, and parses the body.
func Scrape(url, token string) (Families, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, body, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, body)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" || params["version"] != "0.0.4" {
		return nil, body, fmt.Errorf("scrape %s: content type %q, want text/plain; version=0.0.4", url, resp.Header.Get("Content-Type"))
	}
	fams, err := Parse(body)
	return fams, body, err
}

// Sample is the value of the series of family name whose labels include
// labels (name=value pairs): a counter's or gauge's value, a histogram's
// count. ok is false when no series matches; several matching are summed.
func (f Families) Sample(name string, labels ...string) (value float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			value += m.Counter.GetValue()
		case m.Gauge != nil:
			value += m.Gauge.GetValue()
		case m.Histogram != nil:
			value += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			value += m.Untyped.GetValue()
		}
	}
	return value, ok
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
