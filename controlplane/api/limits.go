package api

import (
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// Limits of a request body, checked before it is decoded (the size is
// bounded by Options.MaxRequestBytes before that). See docs/security.md.
const (
	// MaxRequestDepth bounds the nesting of arrays and objects in a
	// request body. The object inside is further bounded by
	// manifests.MaxNestingDepth.
	MaxRequestDepth = 100
	// maxResourceLen bounds the resource a request names (pods, po, ...).
	maxResourceLen = 63
	// maxSelectorLen bounds a list request's label selector.
	maxSelectorLen = 16 << 10
	// maxResourceVersionLen bounds a delete's resourceVersion (a uint64).
	maxResourceVersionLen = 20
	// maxPolicyLen bounds a delete's propagationPolicy.
	maxPolicyLen = 32
	// maxTokenIDLen, maxSecretLen and maxPublicKeyLen bound the fields
	// of a join request (an ID is 16 hex digits, a secret 43 base64
	// characters, a public nkey 56 characters).
	maxTokenIDLen   = 64
	maxSecretLen    = 256
	maxPublicKeyLen = 128
	// maxDurationLen bounds a TTL ("720h").
	maxDurationLen = 32
)

// decodeBounded checks a request body (nesting depth, list lengths,
// UTF-8) and then
// strictly decodes it into v, and checks the fields of the requests that
// name objects: every failure is Invalid, naming the field.
func decodeBounded(body []byte, v any) error {
	if err := checkShape(body, MaxRequestDepth, manifests.MaxListItems); err != nil {
		return client.Errorf(client.CodeInvalid, "decode request: %v", err)
	}
	if err := manifests.InvalidUTF8(body); err != nil {
		return client.Errorf(client.CodeInvalid, "decode request: %v", err)
	}
	if err := decodeRequest(body, v); err != nil {
		return err
	}
	switch r := v.(type) {
	case *client.GetRequest:
		return checkFields(
			field{"resource", r.Resource, maxResourceLen, nil},
			field{"namespace", r.Namespace, 63, manifests.ValidateDNSLabel},
			field{"name", r.Name, 253, checkKeyName})
	case *client.ListRequest:
		return checkFields(
			field{"resource", r.Resource, maxResourceLen, nil},
			field{"namespace", r.Namespace, 63, manifests.ValidateDNSLabel},
			field{"labelSelector", r.LabelSelector, maxSelectorLen, nil})
	case *client.DeleteRequest:
		return checkFields(
			field{"resource", r.Resource, maxResourceLen, nil},
			field{"namespace", r.Namespace, 63, manifests.ValidateDNSLabel},
			field{"name", r.Name, 253, checkKeyName},
			field{"resourceVersion", r.ResourceVersion, maxResourceVersionLen, nil},
			field{"propagationPolicy", r.PropagationPolicy, maxPolicyLen, nil})
	case *client.JoinRequest:
		// The token ID and the node name become keys of the join tokens
		// and node keys buckets: no wildcard may reach them (found by
		// FuzzJoinRequest: "*" was an Internal "invalid key").
		return checkFields(
			field{"tokenId", r.TokenID, maxTokenIDLen, checkKeyName},
			field{"secret", r.Secret, maxSecretLen, nil},
			field{"node", r.Node, 253, checkKeyName},
			field{"publicKey", r.PublicKey, maxPublicKeyLen, nil})
	case *client.RevokeRequest:
		return checkFields(field{"node", r.Node, 253, checkKeyName})
	case *client.TokenCreateRequest:
		return checkFields(field{"ttl", r.TTL, maxDurationLen, nil}, field{"node", r.Node, 253, nil})
	}
	return nil
}

// field is one string field of a request and its checks.
type field struct {
	name   string
	value  string
	maxLen int
	check  func(string) error // applied to non-empty values
}

func checkFields(fields ...field) error {
	for _, f := range fields {
		if len(f.value) > f.maxLen {
			return client.Errorf(client.CodeInvalid, "%s: Too long: %d bytes, must have at most %d", f.name, len(f.value), f.maxLen)
		}
		if f.value != "" && f.check != nil {
			if err := f.check(f.value); err != nil {
				return client.Errorf(client.CodeInvalid, "%s: Invalid value: %q: %v", f.name, f.value, err)
			}
		}
	}
	return nil
}

// checkKeyName checks that an object name requested by a client can be a
// key token of the objects bucket: every stored name passed the stricter
// checks of its kind, so a name failing this one is surely absent, and it
// must not reach the store as a wildcard or a broken key.
func checkKeyName(name string) error {
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return fmt.Errorf("may contain only alphanumerics, '-' and '.'")
		}
	}
	return nil
}

// decodeObjectBounded decodes an object sent by a client (decodeObject)
// and refuses a name or namespace too long to be repeated in an error.
func decodeObjectBounded(raw []byte) (manifests.Object, manifests.Kind, error) {
	obj, k, err := decodeObject(raw)
	if err != nil {
		return obj, k, err
	}
	meta := obj.GetObjectMeta()
	if err := checkFields(
		field{"metadata.name", meta.Name, 253, nil},
		field{"metadata.generateName", meta.GenerateName, 253, nil},
		field{"metadata.namespace", meta.Namespace, 63, nil},
	); err != nil {
		return nil, k, err
	}
	return obj, k, nil
}

// checkObjectName checks the name of an object sent by a client that is
// read before it is validated (a status update).
func checkObjectName(name string) error {
	if err := requireName(name); err != nil {
		return err
	}
	return checkFields(field{"metadata.name", name, 253, checkKeyName})
}

// checkShape refuses JSON nested deeper than maxDepth arrays and objects,
// or holding a list (anywhere) of more than maxItems items. It scans the
// bytes once, without recursion, so a body of a million '[' costs a few
// milliseconds and no stack, and a list of a million tiny items is refused
// before encoding/json makes a value of each (no request has such a list:
// an object's lists are bounded by manifests.MaxListItems too).
func checkShape(body []byte, maxDepth, maxItems int) error {
	type level struct {
		array  bool
		commas int // separators met: items - 1
		start  int // offset of the '[' or '{'
	}
	var levels []level
	inString, escaped := false, false
	for i, c := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if len(levels) == maxDepth {
				return fmt.Errorf("nesting deeper than %d levels", maxDepth)
			}
			levels = append(levels, level{array: c == '[', start: i})
		case c == ']' || c == '}':
			if len(levels) > 0 {
				levels = levels[:len(levels)-1]
			}
		case c == ',':
			if n := len(levels); n > 0 && levels[n-1].array {
				levels[n-1].commas++
				if levels[n-1].commas == maxItems {
					return listTooLong(body, levels[n-1].start, maxItems)
				}
			}
		}
	}
	return nil
}

// listTooLong is the error of the list starting at offset start, naming
// its field when the JSON before it can be read.
func listTooLong(body []byte, start, maxItems int) error {
	path := manifests.JSONPathAt(body, start)
	if path == "" {
		return fmt.Errorf("a list holds more than %d items", maxItems)
	}
	return fmt.Errorf("%s: too many: more than %d items", path, maxItems)
}
