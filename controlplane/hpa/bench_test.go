package hpa

import (
	"fmt"
	"testing"
)

// BenchmarkSync measures one sync of an HPA whose 100 pods run on 100
// nodes (reports read with one watch of the bucket) or on 10 nodes (one
// get each), usage within the tolerance so that nothing is written but
// the status once.
func BenchmarkSync(b *testing.B) {
	for _, nodes := range []int{10, 100} {
		b.Run(fmt.Sprintf("pods=100/nodes=%d", nodes), func(b *testing.B) {
			v := newEnv(b)
			v.deployment("web", 100)
			figs := map[string][]figures{}
			for i := range 100 {
				node, name := fmt.Sprintf("n%d", i%nodes), fmt.Sprintf("web-%d", i)
				figs[node] = append(figs[node], figures{name, v.pod("web", name, node, true), "50m", ""})
			}
			for node, f := range figs {
				v.report(node, f...)
			}
			v.hpa("web", "web", 1, 200, cpuUtil(50), nil)
			v.hpas.Load(b, v.e.Store, "horizontalpodautoscalers")
			v.pods.Load(b, v.e.Store, "pods")
			if err := v.c.Sync(v.ctx, "default/web"); err != nil {
				b.Fatal(err)
			}
			v.hpas.Load(b, v.e.Store, "horizontalpodautoscalers")
			b.ResetTimer()
			for b.Loop() {
				if err := v.c.Sync(v.ctx, "default/web"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
