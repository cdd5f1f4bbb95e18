package auth

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/edgeorch/edgeorch/messaging"
)

// RoleUser is an operator identity authorised by RBAC (docs/rbac.md): it
// may publish only on its own API prefix (UserAPISubject) and subscribe
// only to its own inbox; the API server decides each request from the
// Roles and bindings that name the user or its groups.
const RoleUser Role = "user"

// Names of the user API subjects and inboxes.
const (
	userAPIToken = "user"
	// userInboxRoot is the first token of every user inbox (upper case:
	// node names are lower case, so it never collides with theirs).
	userInboxRoot  = "_INBOX_U"
	groupTagPrefix = "group:"
	userTagPrefix  = "user:"
)

var (
	userNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	groupNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.:@]*[A-Za-z0-9])?$`)
)

// MaxUserGroups bounds the groups of one user.
const MaxUserGroups = 32

// ValidateUserName checks an RBAC user name: a DNS label (lower-case
// letters, digits and '-', at most 63), so that it is one subject token.
func ValidateUserName(name string) error {
	if name == "" {
		return fmt.Errorf("user name: required")
	}
	if len(name) > 63 || !userNameRE.MatchString(name) {
		return fmt.Errorf("user name %q: must be lower-case letters, digits and '-', start and end with a letter or digit, at most 63 characters", name)
	}
	if name == string(RoleAdmin) || name == string(RoleReadonly) {
		return fmt.Errorf("user name %q: reserved for the built-in %s credentials", name, name)
	}
	return nil
}

// ValidateGroupName checks an RBAC group name.
func ValidateGroupName(g string) error {
	if len(g) > 253 || !groupNameRE.MatchString(g) {
		return fmt.Errorf("group %q: must be letters, digits and '-', '_', '.', ':', '@', start and end with a letter or digit, at most 253 characters", g)
	}
	if strings.HasPrefix(g, "system:") {
		return fmt.Errorf("group %q: the system: prefix is reserved", g)
	}
	return nil
}

// UserAPISubject is the request subject of an API verb sent by user: the
// API server takes the user from the subject, and the user's permissions
// let it publish only under its own name.
func UserAPISubject(user, verb string) string {
	return messaging.APISubject(userAPIToken + "." + user + "." + verb)
}

// UserAPIFilter matches the user-scoped subjects of verb for every user.
func UserAPIFilter(verb string) string {
	return messaging.APISubject(userAPIToken + ".*." + verb)
}

// ParseUserAPISubject returns the user and verb of a UserAPISubject.
func ParseUserAPISubject(subject string) (user, verb string, ok bool) {
	rest, found := strings.CutPrefix(subject, messaging.APISubject(userAPIToken)+".")
	if !found {
		return "", "", false
	}
	user, verb, found = strings.Cut(rest, ".")
	if !found || user == "" || verb == "" || strings.Contains(verb, ".") {
		return "", "", false
	}
	return user, verb, true
}

// UserInboxPrefix is the inbox prefix (nats.CustomInboxPrefix) of user:
// two tokens, so that no wildcard of another identity's inbox matches it.
func UserInboxPrefix(user string) string { return userInboxRoot + "." + user }

// userPermissions: publish only on its own API prefix (and the API
// service's info, for edgectl version), subscribe only to its own inbox.
// No watch, event or agent subjects: those would bypass RBAC (docs/rbac.md).
func userPermissions(user string) (jwt.Permissions, error) {
	var p jwt.Permissions
	if err := ValidateUserName(user); err != nil {
		return p, err
	}
	p.Pub.Allow.Add(
		messaging.APIPrefix()+"."+userAPIToken+"."+user+".>",
		"$SRV.INFO."+messaging.APIServiceName,
	)
	p.Sub.Allow.Add(UserInboxPrefix(user) + ".>")
	return p, nil
}

// NewRBACUser makes a key pair for the RBAC user name with groups and
// issues its JWT (role user; the groups are also in its tags, for
// display: the API server takes them from its own record). It returns
// the creds file content and the user's public key.
func (a *Authority) NewRBACUser(name string, groups []string, expires time.Time) ([]byte, string, error) {
	if len(groups) > MaxUserGroups {
		return nil, "", fmt.Errorf("user %s: %d groups, at most %d", name, len(groups), MaxUserGroups)
	}
	for _, g := range groups {
		if err := ValidateGroupName(g); err != nil {
			return nil, "", fmt.Errorf("user %s: %w", name, err)
		}
	}
	perms, err := userPermissions(name)
	if err != nil {
		return nil, "", fmt.Errorf("issue user: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", fmt.Errorf("create user key: %w", err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuerAccount = a.accountPub
	uc.Permissions = perms
	uc.Tags.Add("role:"+string(RoleUser), userTagPrefix+name)
	// Appended as they are: TagList.Add lower-cases, group names keep
	// their case.
	for _, g := range groups {
		uc.Tags = append(uc.Tags, groupTagPrefix+g)
	}
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	token, err := uc.Encode(a.signing)
	if err != nil {
		return nil, "", fmt.Errorf("issue user %s: %w", name, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, "", fmt.Errorf("seed of user %s: %w", name, err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, "", fmt.Errorf("format creds of %s: %w", name, err)
	}
	return creds, pub, nil
}

// UserName is the RBAC user the creds were issued to ("" when they are
// not RoleUser creds).
func (c *Creds) UserName() string {
	if c.Role() != RoleUser {
		return ""
	}
	return UserOfClaims(c.Claims)
}

// UserOfClaims is the RBAC user named by user claims ("" when they are
// not of RoleUser).
func UserOfClaims(uc *jwt.UserClaims) string {
	isUser := false
	name := ""
	for _, t := range uc.Tags {
		if t == "role:"+string(RoleUser) {
			isUser = true
		}
		if n, ok := strings.CutPrefix(t, userTagPrefix); ok {
			name = n
		}
	}
	if !isUser {
		return ""
	}
	if name == "" {
		name = uc.Name // issued by IssueUser(pub, name, RoleUser, name, ...)
	}
	return name
}

// Groups are the groups written in the creds (for display: the API
// server authorises with the groups it recorded when it issued them).
func (c *Creds) Groups() []string {
	var out []string
	for _, t := range c.Claims.Tags {
		if g, ok := strings.CutPrefix(t, groupTagPrefix); ok {
			out = append(out, g)
		}
	}
	return out
}
