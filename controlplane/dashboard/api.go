package dashboard

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

//go:embed ui
var uiFiles embed.FS

// contentSecurityPolicy allows nothing but the dashboard's own files and
// API: no external asset, no inline script.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler is the dashboard's HTTP handler: the page under /, JSON under
// /api/, every request authenticated unless Dev. Only GET and HEAD are
// served: the dashboard is read-only.
func (s *Server) Handler() http.Handler {
	ui, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	mux := http.NewServeMux()
	files := http.FileServerFS(ui)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, ui, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /api/summary", s.handleSummary)
	mux.HandleFunc("GET /api/nodes", s.handleNodes)
	mux.HandleFunc("GET /api/pods", s.handlePods)
	mux.HandleFunc("GET /api/workloads", s.handleWorkloads)
	mux.HandleFunc("GET /api/rollouts", s.handleRollouts)
	mux.HandleFunc("GET /api/events", s.handleEvents)
	mux.HandleFunc("GET /api/stream", s.handleStream)
	mux.Handle("GET /metrics", s.handleMetrics()) // Prometheus text (metrics.go)
	return s.withHeaders(s.withAuth(mux))
}

func (s *Server) withHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// Page is the envelope of a list: the rows from Offset, at most Limit of
// them, out of Total rows that match the filters.
type Page[T any] struct {
	Total  int  `json:"total"`
	Offset int  `json:"offset"`
	Limit  int  `json:"limit"`
	Synced bool `json:"synced"`
	Items  []T  `json:"items"`
}

// query holds the common list parameters: offset, limit and q (a
// substring of namespace/name).
type query struct {
	offset, limit int
	q             string
}

func parseQuery(r *http.Request) (query, error) {
	v := r.URL.Query()
	q := query{limit: DefaultPageSize, q: strings.ToLower(strings.TrimSpace(v.Get("q")))}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("offset %q: want a number >= 0", s)
		}
		q.offset = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return q, fmt.Errorf("limit %q: want a number from 1 to %d", s, MaxPageSize)
		}
		q.limit = n
	}
	return q, nil
}

// matches reports whether namespace/name contains the q filter.
func (q query) matches(namespace, name string) bool {
	if q.q == "" {
		return true
	}
	return strings.Contains(strings.ToLower(name), q.q) ||
		(namespace != "" && strings.Contains(strings.ToLower(namespace+"/"+name), q.q))
}

func page[T any](q query, rows []T, synced bool) Page[T] {
	p := Page[T]{Total: len(rows), Offset: q.offset, Limit: q.limit, Synced: synced, Items: []T{}}
	if q.offset < len(rows) {
		p.Items = rows[q.offset:min(q.offset+q.limit, len(rows))]
	}
	return p
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return // the client went away
	}
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
}

// podsPerNode counts the cached pods bound to each node.
func (s *Server) podsPerNode() map[string]int {
	out := map[string]int{}
	for _, o := range s.inf["pods"].List(manifests.Selector{}) {
		if p, ok := o.(*manifests.Pod); ok && p.Spec.NodeName != "" {
			out[p.Spec.NodeName]++
		}
	}
	return out
}

// Summary is /api/summary: counts over the whole fleet.
type Summary struct {
	Synced    bool           `json:"synced"`
	Time      time.Time      `json:"time"`
	Nodes     int            `json:"nodes"`
	Online    int            `json:"online"`
	Offline   int            `json:"offline"`
	NodeState map[string]int `json:"nodeStates"`
	Pods      int            `json:"pods"`
	PodPhase  map[string]int `json:"podPhases"`
	Workloads map[string]int `json:"workloads"`
	Rollouts  map[string]int `json:"rollouts"`
}

func (s *Server) handleSummary(w http.ResponseWriter, r *http.Request) {
	sum := Summary{
		Synced: s.synced(), Time: s.now().UTC(), NodeState: map[string]int{}, PodPhase: map[string]int{},
		Workloads: map[string]int{}, Rollouts: map[string]int{},
	}
	for _, o := range s.inf["nodes"].List(manifests.Selector{}) {
		if n, ok := o.(*manifests.Node); ok {
			st, _ := nodeState(n)
			sum.Nodes++
			sum.NodeState[st]++
			if st == NodeReady {
				sum.Online++
			} else {
				sum.Offline++
			}
		}
	}
	for _, o := range s.inf["pods"].List(manifests.Selector{}) {
		if p, ok := o.(*manifests.Pod); ok {
			sum.Pods++
			sum.PodPhase[podRow(p).Phase]++
		}
	}
	for _, res := range []string{"deployments", "daemonsets", "replicasets", "jobs"} {
		for _, o := range s.inf[res].List(manifests.Selector{}) {
			if wr, ok := workloadRow(o); ok {
				sum.Workloads[wr.Kind]++
			}
		}
	}
	for _, o := range s.inf["rollouts"].List(manifests.Selector{}) {
		if ro, ok := o.(*manifests.Rollout); ok {
			sum.Rollouts[rolloutRow(ro).Phase]++
		}
	}
	writeJSON(w, sum)
}

// handleNodes serves /api/nodes: filters q, state (Ready, NotReady,
// Unreachable, online, offline).
func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", NodeReady, NodeNotReady, NodeUnreachable, "online", "offline":
	default:
		badRequest(w, fmt.Errorf("state %q: want Ready, NotReady, Unreachable, online or offline", state))
		return
	}
	pods, now := s.podsPerNode(), s.now()
	var rows []NodeRow
	for _, o := range s.inf["nodes"].List(manifests.Selector{}) {
		n, ok := o.(*manifests.Node)
		if !ok || !q.matches("", n.Name) {
			continue
		}
		row := nodeRow(n, pods[n.Name], now)
		if !stateMatches(state, row) {
			continue
		}
		rows = append(rows, row)
	}
	writeJSON(w, page(q, rows, s.inf["nodes"].HasSynced()))
}

// stateMatches reports whether a node row passes the state filter.
func stateMatches(want string, r NodeRow) bool {
	switch want {
	case "":
		return true
	case "online":
		return r.Online
	case "offline":
		return !r.Online
	}
	return r.State == want
}

// handlePods serves /api/pods: filters q, namespace, node, phase.
func (s *Server) handlePods(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	v := r.URL.Query()
	ns, node, phase := v.Get("namespace"), v.Get("node"), v.Get("phase")
	var rows []PodRow
	for _, o := range s.inf["pods"].List(manifests.Selector{}) {
		p, ok := o.(*manifests.Pod)
		if !ok || !q.matches(p.Namespace, p.Name) || ns != "" && p.Namespace != ns || node != "" && p.Spec.NodeName != node {
			continue
		}
		row := podRow(p)
		if phase != "" && row.Phase != phase {
			continue
		}
		rows = append(rows, row)
	}
	writeJSON(w, page(q, rows, s.inf["pods"].HasSynced()))
}

// handleWorkloads serves /api/workloads: Deployments, DaemonSets, Jobs
// and ReplicaSets (in that order); filters q, namespace, kind.
func (s *Server) handleWorkloads(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	v := r.URL.Query()
	ns, kind := v.Get("namespace"), v.Get("kind")
	var rows []WorkloadRow
	synced := true
	for _, res := range []string{"deployments", "daemonsets", "jobs", "replicasets"} {
		synced = synced && s.inf[res].HasSynced()
		for _, o := range s.inf[res].List(manifests.Selector{}) {
			m := o.GetObjectMeta()
			if !q.matches(m.Namespace, m.Name) || ns != "" && m.Namespace != ns {
				continue
			}
			if row, ok := workloadRow(o); ok && (kind == "" || strings.EqualFold(kind, row.Kind)) {
				rows = append(rows, row)
			}
		}
	}
	writeJSON(w, page(q, rows, synced))
}

// handleRollouts serves /api/rollouts: filters q, namespace.
func (s *Server) handleRollouts(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	ns := r.URL.Query().Get("namespace")
	var rows []RolloutRow
	for _, o := range s.inf["rollouts"].List(manifests.Selector{}) {
		ro, ok := o.(*manifests.Rollout)
		if !ok || !q.matches(ro.Namespace, ro.Name) || ns != "" && ro.Namespace != ns {
			continue
		}
		rows = append(rows, rolloutRow(ro))
	}
	writeJSON(w, page(q, rows, s.inf["rollouts"].HasSynced()))
}

// handleEvents serves /api/events, newest first: filters q (on the
// object and the reason), namespace, type (Normal, Warning).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	v := r.URL.Query()
	ns, typ := v.Get("namespace"), v.Get("type")
	var rows []EventRow
	for _, o := range s.inf["events"].List(manifests.Selector{}) {
		e, ok := o.(*manifests.Event)
		if !ok || ns != "" && e.Namespace != ns || typ != "" && e.Type != typ {
			continue
		}
		row := eventRow(e)
		if q.q != "" && !strings.Contains(strings.ToLower(row.Object+" "+row.Reason), q.q) {
			continue
		}
		rows = append(rows, row)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Last.After(rows[j].Last) })
	writeJSON(w, page(q, rows, s.inf["events"].HasSynced()))
}
