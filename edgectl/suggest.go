package edgectl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// lookupKind resolves what the operator typed (pods, pod, po, Pod,
// deployments.apps) to a kind; an unknown name gets kubectl's error with
// the closest resource name as a suggestion:
//
//	the server doesn't have a resource type "deploy2"; did you mean "deployments"?
func lookupKind(name string) (manifests.Kind, error) {
	k, err := manifests.KindForResource(name)
	if err == nil {
		return k, nil
	}
	if s := suggestKind(name); s != "" {
		return k, fmt.Errorf("%w; did you mean %q?", err, s)
	}
	return k, err
}

// maxKindDistance is the largest edit distance between a typo and a kind
// name for the kind to be suggested; short typed names allow less.
func maxKindDistance(typed string) int {
	switch n := len(typed); {
	case n <= 2:
		return 1
	case n <= 5:
		return 2
	default:
		return 3
	}
}

// suggestKind returns the plural resource name of the kind whose names
// (plural, singular, kind, short names) are closest to typed, or "" when
// none is close enough: "deploymnt" suggests "deployments".
func suggestKind(typed string) string {
	l := strings.ToLower(typed)
	if i := strings.IndexByte(l, '.'); i > 0 {
		l = l[:i]
	}
	if l == "" {
		return ""
	}
	best, bestDist := "", maxKindDistance(l)+1
	for _, k := range manifests.Kinds() {
		names := append([]string{k.Resource, k.Singular, strings.ToLower(k.Kind)}, k.ShortNames...)
		for _, n := range names {
			d := editDistance(l, n)
			if d < bestDist {
				best, bestDist = k.Resource, d
			}
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance between a and b: insertions, deletions, substitutions and
// transpositions of neighbours each cost 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// maxNamespacesProbed bounds the namespaces a NotFound is looked up in
// for a hint: beyond that, the hint is not worth the requests.
const maxNamespacesProbed = 32

// namespaceHintTimeout bounds the whole look-up for the hint.
const namespaceHintTimeout = 2 * time.Second

// withNamespaceHint adds to a NotFound for a namespaced object the
// namespace that was searched and, when the object exists in other
// namespaces (looked up only when there are few namespaces), where:
//
//	pods "web" not found in namespace "default"; it exists in namespace "prod": use -n prod (or list every namespace with -A)
//
// Any other error is returned unchanged, and so is a NotFound when the
// look-up fails.
func withNamespaceHint(ctx context.Context, cl *client.Client, err error, k manifests.Kind, ns, name string) error {
	var se *client.StatusError
	if !k.Namespaced || !errors.As(err, &se) || se.Code != client.CodeNotFound {
		return err
	}
	msg := fmt.Sprintf("%s in namespace %q", se.Message, ns)
	if others := namespacesHolding(ctx, cl, k, ns, name); len(others) > 0 {
		quoted := make([]string, len(others))
		for i, o := range others {
			quoted[i] = fmt.Sprintf("%q", o)
		}
		word := "namespace"
		if len(others) > 1 {
			word = "namespaces"
		}
		msg += fmt.Sprintf("; it exists in %s %s: use -n %s (or list every namespace with -A)", word, strings.Join(quoted, ", "), others[0])
	}
	return &client.StatusError{Code: se.Code, Message: msg}
}

// namespacesHolding returns the namespaces other than except that have an
// object k/name, sorted; nil when there are too many namespaces to ask or
// the look-up fails.
func namespacesHolding(ctx context.Context, cl *client.Client, k manifests.Kind, except, name string) []string {
	ctx, cancel := context.WithTimeout(ctx, namespaceHintTimeout)
	defer cancel()
	nss, _, err := cl.List(ctx, "namespaces", "", "")
	if err != nil || len(nss) > maxNamespacesProbed {
		return nil
	}
	var mu sync.Mutex
	var found []string
	var wg sync.WaitGroup
	for _, n := range nss {
		nsName := n.GetObjectMeta().Name
		if nsName == except {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Get(ctx, k.Resource, nsName, name); err == nil {
				mu.Lock()
				found = append(found, nsName)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(found)
	return found
}
