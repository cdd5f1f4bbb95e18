package edgectl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// TestNodeTableLastSeen: `get nodes -o wide` ends with LAST-SEEN, the age
// of the Ready condition's lastHeartbeatTime; the narrow table has none.
func TestNodeTableLastSeen(t *testing.T) {
	node := func(name, status string, beat time.Duration) *manifests.Node {
		n := &manifests.Node{ObjectMeta: meta("", name, 3*time.Hour)}
		n.Status.Conditions = []manifests.NodeCondition{{Type: "Ready", Status: status, LastHeartbeatTime: tableNow.Add(-beat)}}
		return n
	}
	never := &manifests.Node{ObjectMeta: meta("", "edge-new", time.Minute)}
	zero := node("edge-zero", "Unknown", 0)
	zero.Status.Conditions[0].LastHeartbeatTime = time.Time{}
	objs := []manifests.Object{
		node("edge-1", "True", 12*time.Second),
		node("edge-2", "Unknown", 3*time.Minute),
		node("edge-3", "Unknown", 26*time.Hour+5*time.Minute),
		node("edge-4", "Unknown", 9*24*time.Hour),
		never, zero,
	}
	var buf bytes.Buffer
	if err := printTable(&buf, mustKind(t, "nodes"), objs, tableOptions{Wide: true, Now: tableNow}); err != nil {
		t.Fatal(err)
	}
	got := lines(buf.String())
	if h := got[0]; h[len(h)-1] != "LAST-SEEN" {
		t.Fatalf("header %v: want LAST-SEEN last", h)
	}
	want := map[string]string{"edge-1": "12s", "edge-2": "3m", "edge-3": "26h", "edge-4": "9d", "edge-new": "<unknown>", "edge-zero": "<unknown>"}
	for _, row := range got[1:] {
		if w, ok := want[row[0]]; !ok || row[len(row)-1] != w {
			t.Errorf("row %v: LAST-SEEN want %q", row, w)
		}
		delete(want, row[0])
	}
	if len(want) != 0 {
		t.Errorf("rows missing: %v", want)
	}
	// The header and its cells line up.
	rows := strings.Split(buf.String(), "\n")
	if i := strings.Index(rows[0], "LAST-SEEN"); i < 0 || !strings.HasPrefix(rows[1][i:], "12s") {
		t.Errorf("LAST-SEEN not aligned:\n%s", buf.String())
	}

	buf.Reset()
	if err := printTable(&buf, mustKind(t, "nodes"), objs[:1], tableOptions{Now: tableNow}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "LAST-SEEN") || strings.Contains(buf.String(), "12s") {
		t.Errorf("narrow table has LAST-SEEN:\n%s", buf.String())
	}
}
