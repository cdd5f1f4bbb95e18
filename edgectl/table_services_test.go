package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestServiceTable(t *testing.T) {
	web := &manifests.Service{ObjectMeta: meta("default", "web", 2*time.Minute)}
	web.Spec = manifests.ServiceSpec{Type: "NodePort", ClusterIP: "10.96.0.7", Selector: map[string]string{"app": "web"},
		Ports: []manifests.ServicePort{{Name: "http", Port: 80, Protocol: "TCP", NodePort: 30080}, {Name: "dns", Port: 53, Protocol: "UDP", NodePort: 30053}}}
	db := &manifests.Service{ObjectMeta: meta("default", "db", time.Hour)}
	db.Spec = manifests.ServiceSpec{Type: "ClusterIP", ClusterIP: "None", Ports: []manifests.ServicePort{{Port: 5432, Protocol: "TCP"}}}
	ext := &manifests.Service{ObjectMeta: meta("default", "ext", time.Minute)}
	ext.Spec = manifests.ServiceSpec{Type: "ExternalName", ExternalName: "example.com"}
	got := tableText(t, "svc", []manifests.Object{web, db, ext}, tableOptions{Now: tableNow})
	checkRows(t, got,
		"NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE",
		"web | NodePort | 10.96.0.7 | <none> | 80:30080/TCP,53:30053/UDP | 2m",
		"db | ClusterIP | None | <none> | 5432/TCP | 60m",
		"ext | ExternalName | <none> | example.com | <none> | 60s")
	got = tableText(t, "services", []manifests.Object{web}, tableOptions{Now: tableNow, Wide: true})
	checkRows(t, got,
		"NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE | SELECTOR",
		"web | NodePort | 10.96.0.7 | <none> | 80:30080/TCP,53:30053/UDP | 2m | app=web")
}

func TestEndpointsTable(t *testing.T) {
	web := &manifests.Endpoints{ObjectMeta: meta("default", "web", 2*time.Minute)}
	web.Subsets = []manifests.EndpointSubset{
		{Addresses: []manifests.EndpointAddress{{IP: "10.244.0.2"}, {IP: "10.244.1.2"}},
			NotReadyAddresses: []manifests.EndpointAddress{{IP: "10.244.2.2"}},
			Ports:             []manifests.EndpointPort{{Port: 8080, Protocol: "TCP"}, {Port: 9100, Protocol: "TCP"}}},
	}
	empty := &manifests.Endpoints{ObjectMeta: meta("default", "empty", time.Minute)}
	headless := &manifests.Endpoints{ObjectMeta: meta("default", "h", time.Minute)}
	headless.Subsets = []manifests.EndpointSubset{{Addresses: []manifests.EndpointAddress{{IP: "10.244.0.9"}}}}
	got := tableText(t, "ep", []manifests.Object{web, empty, headless}, tableOptions{Now: tableNow})
	checkRows(t, got,
		"NAME | ENDPOINTS | AGE",
		"web | 10.244.0.2:8080,10.244.0.2:9100,10.244.1.2:8080 + 1 more... | 2m",
		"empty | <none> | 60s",
		"h | 10.244.0.9 | 60s")
}
