package auth

import (
	"strings"
	"testing"
	"time"
)

func TestUserSubjectsAndNames(t *testing.T) {
	s := UserAPISubject("alice", "get")
	if s != "edge.api.v1.user.alice.get" {
		t.Fatalf("subject %q", s)
	}
	if u, v, ok := ParseUserAPISubject(s); !ok || u != "alice" || v != "get" {
		t.Fatalf("parse %q: %q %q %v", s, u, v, ok)
	}
	for _, bad := range []string{"edge.api.v1.get", "edge.api.v1.user.alice", "edge.api.v1.user..get", "edge.api.v1.user.alice.get.x", "edge.api.v1.node.n.get"} {
		if _, _, ok := ParseUserAPISubject(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	for _, bad := range []string{"", "Alice", "a.b", "a*", "a>", "-a", "admin", "readonly", strings.Repeat("a", 64)} {
		if err := ValidateUserName(bad); err == nil {
			t.Errorf("user name %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "system:masters", "a b", "ops*"} {
		if err := ValidateGroupName(bad); err == nil {
			t.Errorf("group %q accepted", bad)
		}
	}
	if err := ValidateGroupName("Team:Ops@example.com"); err != nil {
		t.Error(err)
	}
}

func TestNewRBACUserCreds(t *testing.T) {
	a, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	raw, pub, err := a.NewRBACUser("alice", []string{"Ops", "dev"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCreds(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Claims.Subject != pub || c.Role() != RoleUser || c.UserName() != "alice" {
		t.Fatalf("creds: subject %s role %q user %q", c.Claims.Subject, c.Role(), c.UserName())
	}
	if g := strings.Join(c.Groups(), ","); g != "Ops,dev" {
		t.Fatalf("groups %q (case kept)", g)
	}
	if c.InboxPrefix() != "_INBOX_U.alice" || c.Expires().IsZero() {
		t.Fatalf("inbox %q expires %v", c.InboxPrefix(), c.Expires())
	}
	p := c.Claims.Permissions
	if len(p.Pub.Allow) != 2 || p.Pub.Allow[0] != "edge.api.v1.user.alice.>" || len(p.Sub.Allow) != 1 || p.Sub.Allow[0] != "_INBOX_U.alice.>" {
		t.Fatalf("permissions %+v", p)
	}
	if _, _, err := a.NewRBACUser("alice", []string{"system:masters"}, time.Time{}); err == nil {
		t.Fatal("reserved group accepted")
	}
	if _, err := PermissionsOf(RoleUser, "Bad.Name"); err == nil {
		t.Fatal("bad user name accepted")
	}
}
