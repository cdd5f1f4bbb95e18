package edgectl

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const aliceView = `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-view, namespace: default}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
`

// An RBAC user made with `user create`, bound to view: reads, is denied
// writes with kubectl's message, and can-i agrees; revoke cuts it off.
func TestRBACUserEndToEnd(t *testing.T) {
	url, admin, readonly := startSecureControlPlane(t)
	as := func(creds, stdin string, args ...string) ctlResult {
		return runCtl(t, stdin, append([]string{"--server", url, "--creds", creds}, args...)...)
	}
	alice := filepath.Join(t.TempDir(), "alice.creds")
	r := as(admin, "", "user", "create", "alice", "--group", "ops", "--creds-file", alice)
	mustOK(t, r, "user create")
	if !strings.Contains(r.stderr, "user/alice credentials issued (groups: ops") {
		t.Fatalf("user create: %+v", r)
	}
	mustOK(t, as(admin, aliceView+"---\n"+cmManifest("settings", "1"), "apply", "-f", "-"), "apply binding")

	who := mustOK(t, as(alice, "", "auth", "whoami"), "whoami")
	if !strings.Contains(who, "alice") || !strings.Contains(who, "[ops system:authenticated]") || !strings.Contains(who, "user") {
		t.Fatalf("whoami:\n%s", who)
	}
	eventually(t, 10*time.Second, func() error {
		if r := as(alice, "", "get", "cm", "settings"); r.code != 0 {
			return fmt.Errorf("alice get: %+v", r)
		}
		return nil
	})
	r = as(alice, cmManifest("mine", "1"), "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, `Error from server (Forbidden)`) ||
		!strings.Contains(r.stderr, `configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "default"`) {
		t.Fatalf("alice apply: %+v", r)
	}
	for _, c := range []struct {
		creds string
		args  []string
		code  int
		out   string
	}{
		{alice, []string{"auth", "can-i", "get", "pods"}, 0, "yes\n"},
		{alice, []string{"auth", "can-i", "get", "pods/log"}, 0, "yes\n"},
		{alice, []string{"auth", "can-i", "create", "deployments"}, 1, "no\n"},
		{alice, []string{"auth", "can-i", "list", "pods", "-A"}, 1, "no\n"},
		{alice, []string{"auth", "can-i", "get", "cm", "-n", "other"}, 1, "no\n"},
		{admin, []string{"auth", "can-i", "delete", "nodes"}, 0, "yes\n"},
		{admin, []string{"auth", "can-i", "get", "deployments", "--as", "alice"}, 0, "yes\n"},
		{admin, []string{"auth", "can-i", "delete", "deployments", "--as", "alice"}, 1, "no\n"},
		{readonly, []string{"auth", "can-i", "list", "secrets"}, 0, "yes\n"},
		{readonly, []string{"auth", "can-i", "delete", "pods"}, 1, "no\n"},
	} {
		r := as(c.creds, "", c.args...)
		if r.code != c.code || r.stdout != c.out {
			t.Errorf("%s %v: %+v, want exit %d %q", filepath.Base(c.creds), c.args, r, c.code, c.out)
		}
	}
	list := mustOK(t, as(alice, "", "auth", "can-i", "--list"), "can-i --list")
	if !strings.Contains(list, "deployments.apps") || !strings.Contains(list, "[get list watch]") {
		t.Errorf("can-i --list:\n%s", list)
	}
	// Watches would bypass RBAC: refused at once, by name.
	if r := as(alice, "", "get", "cm", "-w"); r.code == 0 || !strings.Contains(r.stderr, `not available to RBAC user "alice"`) {
		t.Errorf("alice get -w: %+v", r)
	}
	// Admin-only commands are refused to the user, by name.
	if r := as(alice, "", "user", "create", "mallory"); r.code == 0 || !strings.Contains(r.stderr, "not available to RBAC user") {
		t.Errorf("alice user create: %+v", r)
	}
	mustOK(t, as(admin, "", "user", "revoke", "alice"), "user revoke")
	if r := as(alice, "", "get", "cm", "settings"); r.code == 0 {
		t.Errorf("revoked alice still reads: %+v", r)
	}
}
