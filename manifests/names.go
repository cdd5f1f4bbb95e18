package manifests

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelName        = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
)

// ValidateDNSLabel checks a name such as a namespace or container name.
func ValidateDNSLabel(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("must be no more than 63 characters")
	}
	if !dns1123Label.MatchString(s) {
		return fmt.Errorf("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")
	}
	return nil
}

// ValidateDNSSubdomain checks an object name.
func ValidateDNSSubdomain(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("must be no more than 253 characters")
	}
	if !dns1123Subdomain.MatchString(s) {
		return fmt.Errorf("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
	}
	return nil
}

// ValidateLabelKey checks a label key: [prefix/]name.
func ValidateLabelKey(k string) error {
	name := k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		prefix := k[:i]
		name = k[i+1:]
		if err := ValidateDNSSubdomain(prefix); err != nil {
			return fmt.Errorf("prefix part %s", err)
		}
	}
	if name == "" || len(name) > 63 || !labelName.MatchString(name) {
		return fmt.Errorf("name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character")
	}
	return nil
}

// ValidateLabelValue checks a label value (may be empty).
func ValidateLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 63 || !labelName.MatchString(v) {
		return fmt.Errorf("must be 63 characters or less, alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character")
	}
	return nil
}
