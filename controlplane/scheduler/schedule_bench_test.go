package scheduler

import (
	"fmt"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

// BenchmarkSchedule places one pod among 1,000 nodes running 10 pods each.
func BenchmarkSchedule(b *testing.B) {
	var nodes = make([]*manifests.Node, 0, 1000)
	running := map[string][]*manifests.Pod{}
	for i := range 1000 {
		name := fmt.Sprintf("node-%04d", i)
		nodes = append(nodes, node(name, labels("site", fmt.Sprint(i%10)), alloc("4", "4Gi", "110")))
		for j := range 10 {
			running[name] = append(running[name], pod(fmt.Sprintf("p-%d-%d", i, j), requests("50m", "10Mi"), podLabels("app", fmt.Sprint(j))))
		}
	}
	p := pod("new", selector("site", "3"), requests("100m", "20Mi"), podLabels("app", "1"))
	b.ResetTimer()
	for range b.N {
		if _, fe := Schedule(p, nodes, running); fe != nil {
			b.Fatal(fe)
		}
	}
}
