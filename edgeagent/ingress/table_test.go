package ingress

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func svc(ns, name string, ports ...manifests.ServicePort) *manifests.Service {
	return &manifests.Service{ObjectMeta: manifests.ObjectMeta{Namespace: ns, Name: name},
		Spec: manifests.ServiceSpec{ClusterIP: "10.96.0.1", Ports: ports}}
}

func eps(ns, name, ip string, ports ...manifests.EndpointPort) *manifests.Endpoints {
	return &manifests.Endpoints{ObjectMeta: manifests.ObjectMeta{Namespace: ns, Name: name},
		Subsets: []manifests.EndpointSubset{{Addresses: []manifests.EndpointAddress{{IP: ip}}, Ports: ports}}}
}

func sb(name string, port int32) manifests.IngressBackend {
	return manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: name, Port: manifests.ServiceBackendPort{Number: port}}}
}

func path(p, typ, service string) manifests.HTTPIngressPath {
	return manifests.HTTPIngressPath{Path: p, PathType: typ, Backend: sb(service, 80)}
}

func ingress(name string, created time.Time, def *manifests.IngressBackend, rules ...manifests.IngressRule) *manifests.Ingress {
	return &manifests.Ingress{
		ObjectMeta: manifests.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: created},
		Spec:       manifests.IngressSpec{DefaultBackend: def, Rules: rules},
	}
}

func rule(host string, paths ...manifests.HTTPIngressPath) manifests.IngressRule {
	return manifests.IngressRule{Host: host, HTTP: &manifests.HTTPIngressRuleValue{Paths: paths}}
}

// TestMatch is the route matcher's table: hosts (exact beats wildcard
// beats no host), wildcards of exactly one label, and paths (longest
// first, Exact before Prefix, Prefix by path elements).
func TestMatch(t *testing.T) {
	objs := Objects{Services: map[string]*manifests.Service{}, Endpoints: map[string]*manifests.Endpoints{}}
	for i, name := range []string{"exact", "prefix", "foo", "foobar", "wild", "any", "def", "old", "new", "impl", "root", "slash"} {
		objs.Services["default/"+name] = svc("default", name, manifests.ServicePort{Port: 80})
		objs.Endpoints["default/"+name] = eps("default", name, "10.0.0."+string(rune('1'+i%9)), manifests.EndpointPort{Port: int32(8000 + i)})
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	def := sb("def", 80)
	objs.Ingresses = []*manifests.Ingress{
		ingress("b-newer", t0.Add(time.Hour), nil,
			rule("a.example.com", path("/dup", manifests.PathTypePrefix, "new")),
		),
		ingress("a-older", t0, &def,
			rule("a.example.com",
				path("/x", manifests.PathTypeExact, "exact"),
				path("/x", manifests.PathTypePrefix, "prefix"),
				path("/foo", manifests.PathTypePrefix, "foo"),
				path("/foo/bar/", manifests.PathTypePrefix, "foobar"),
				path("/dup", manifests.PathTypePrefix, "old"),
				path("/impl", manifests.PathTypeImplementationSpecific, "impl"),
			),
			rule("*.example.com", path("/", manifests.PathTypePrefix, "wild")),
			rule("", path("/any", manifests.PathTypePrefix, "any")),
			rule("root.example.org", path("/", manifests.PathTypeExact, "root"), path("/", manifests.PathTypePrefix, "slash")),
		),
	}
	tab, err := Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ host, path, want string }{
		{"a.example.com", "/x", "exact"},
		{"a.example.com", "/x/", "prefix"},
		{"a.example.com", "/x/y", "prefix"},
		{"a.example.com", "/xy", "def"}, // Prefix matches whole elements
		{"a.example.com", "/foo", "foo"},
		{"a.example.com", "/foo/", "foo"},
		{"a.example.com", "/foo/bar", "foobar"}, // trailing "/" of the rule ignored
		{"a.example.com", "/foo/bar/baz", "foobar"},
		{"a.example.com", "/foo/barbaz", "foo"},
		{"a.example.com", "/foobar", "def"},
		{"a.example.com", "/dup", "old"}, // the older Ingress wins a conflict
		{"a.example.com", "/impl/z", "impl"},
		{"A.Example.COM:8080", "/x", "exact"}, // case and port of Host ignored
		{"a.example.com.", "/x", "exact"},
		{"a.example.com", "/any", "def"}, // exact host rules win; no fallback to host-less rules
		{"b.example.com", "/anything", "wild"},
		{"example.com", "/any", "any"},     // no label for the wildcard
		{"c.b.example.com", "/any", "any"}, // the wildcard covers one label only
		{"other.org", "/any/thing", "any"},
		{"other.org", "/nothing", "def"},
		{"root.example.org", "/", "root"}, // Exact "/" before Prefix "/"
		{"root.example.org", "/z", "slash"},
	} {
		b := tab.Match(tc.host, tc.path)
		got := ""
		if b != nil {
			got = strings.TrimSuffix(strings.TrimPrefix(b.Service, "default/"), ":80")
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}

	// Without a default backend, nothing matching is nil (404).
	objs.Ingresses = []*manifests.Ingress{ingress("only", t0, nil, rule("a.example.com", path("/x", manifests.PathTypeExact, "exact")))}
	tab, err = Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	if b := tab.Match("a.example.com", "/y"); b != nil {
		t.Errorf("no rule: got %s", b.Service)
	}
	if b := tab.Match("z.example.com", "/x"); b != nil {
		t.Errorf("other host: got %s", b.Service)
	}
	var empty *Table
	if empty.Match("a", "/") != nil {
		t.Error("nil table matched")
	}
}

// TestBackendResolution: ports by number and by name, ready endpoints
// only, and the reason when there is no endpoint.
func TestBackendResolution(t *testing.T) {
	objs := Objects{
		Services: map[string]*manifests.Service{
			"ns/web":  svc("ns", "web", manifests.ServicePort{Name: "http", Port: 80}, manifests.ServicePort{Name: "admin", Port: 9000}),
			"ns/ext":  {ObjectMeta: manifests.ObjectMeta{Namespace: "ns", Name: "ext"}, Spec: manifests.ServiceSpec{Type: manifests.ServiceTypeExternalName, ExternalName: "x.example.com"}},
			"ns/udp":  svc("ns", "udp", manifests.ServicePort{Port: 53, Protocol: "UDP"}),
			"ns/idle": svc("ns", "idle", manifests.ServicePort{Port: 80}),
		},
		Endpoints: map[string]*manifests.Endpoints{
			"ns/web": {ObjectMeta: manifests.ObjectMeta{Namespace: "ns", Name: "web"}, Subsets: []manifests.EndpointSubset{{
				Addresses:         []manifests.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}},
				NotReadyAddresses: []manifests.EndpointAddress{{IP: "10.0.0.3"}},
				Ports:             []manifests.EndpointPort{{Name: "http", Port: 8080}, {Name: "admin", Port: 9090}},
			}}},
			"ns/idle": {ObjectMeta: manifests.ObjectMeta{Namespace: "ns", Name: "idle"}, Subsets: []manifests.EndpointSubset{{
				NotReadyAddresses: []manifests.EndpointAddress{{IP: "10.0.0.4"}},
				Ports:             []manifests.EndpointPort{{Port: 80}},
			}}},
		},
	}
	for _, tc := range []struct {
		port       manifests.ServiceBackendPort
		name       string
		want       string
		wantReason string
	}{
		{manifests.ServiceBackendPort{Number: 80}, "web", "10.0.0.1:8080,10.0.0.2:8080", ""},
		{manifests.ServiceBackendPort{Name: "admin"}, "web", "10.0.0.1:9090,10.0.0.2:9090", ""},
		{manifests.ServiceBackendPort{Number: 81}, "web", "", "service ns/web has no port 81"},
		{manifests.ServiceBackendPort{Name: "nope"}, "web", "", "service ns/web has no port nope"},
		{manifests.ServiceBackendPort{Number: 80}, "missing", "", "service ns/missing not found"},
		{manifests.ServiceBackendPort{Number: 80}, "ext", "", "ExternalName"},
		{manifests.ServiceBackendPort{Number: 53}, "udp", "", "not TCP"},
		{manifests.ServiceBackendPort{Number: 80}, "idle", "", "service ns/idle has no ready endpoint"},
	} {
		b := backendOf(objs, "ns", &manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: tc.name, Port: tc.port}})
		if got := strings.Join(b.Addrs, ","); got != tc.want || !strings.Contains(b.Reason, tc.wantReason) || (tc.wantReason == "") != (b.Reason == "") {
			t.Errorf("%s %+v: addrs %q reason %q, want %q reason %q", tc.name, tc.port, got, b.Reason, tc.want, tc.wantReason)
		}
	}
	b := backendOf(objs, "ns", &manifests.IngressBackend{Service: &manifests.IngressServiceBackend{Name: "web", Port: manifests.ServiceBackendPort{Number: 80}}})
	var seen []string
	for range 3 {
		seen = append(seen, strings.Join(b.Pick(), "+"))
	}
	if got := strings.Join(seen, ","); got != "10.0.0.1:8080+10.0.0.2:8080,10.0.0.2:8080+10.0.0.1:8080,10.0.0.1:8080+10.0.0.2:8080" {
		t.Errorf("round robin: %v", got)
	}
}
