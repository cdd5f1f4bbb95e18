package edgectl

import (
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// resourceArgs is what the operator named on the command line: one kind and
// the names of that kind (none = every object).
type resourceArgs struct {
	Kind  manifests.Kind
	Names []string
}

// parseResourceArgs reads `KIND[,KIND...] [NAME...]` or `KIND/NAME...`.
// The bool result tells whether the TYPE/NAME form or several kinds were
// used, in which case tables name rows kind/name as kubectl does.
func parseResourceArgs(args []string) ([]resourceArgs, bool, error) {
	if len(args) == 0 {
		return nil, false, fmt.Errorf("you must specify the type of resource")
	}
	if strings.Contains(args[0], "/") {
		var out []resourceArgs
		for _, a := range args {
			kindName, name, ok := strings.Cut(a, "/")
			if !ok || kindName == "" || name == "" {
				return nil, false, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'edgectl get resource/<resource_name>' instead of 'edgectl get resource resource/<resource_name>'): %q", a)
			}
			k, err := lookupKind(kindName)
			if err != nil {
				return nil, false, err
			}
			if n := len(out); n > 0 && out[n-1].Kind.Resource == k.Resource {
				out[n-1].Names = append(out[n-1].Names, name)
				continue
			}
			out = append(out, resourceArgs{Kind: k, Names: []string{name}})
		}
		return out, true, nil
	}
	var out []resourceArgs
	for _, kindName := range strings.Split(args[0], ",") {
		if kindName == "" {
			continue
		}
		k, err := lookupKind(kindName)
		if err != nil {
			return nil, false, err
		}
		out = append(out, resourceArgs{Kind: k})
	}
	if len(out) == 0 {
		return nil, false, fmt.Errorf("you must specify the type of resource")
	}
	names := args[1:]
	for _, n := range names {
		if strings.Contains(n, "/") {
			return nil, false, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'edgectl get resource/<resource_name>' instead of 'edgectl get resource resource/<resource_name>')")
		}
	}
	if len(names) > 0 {
		if len(out) > 1 {
			return nil, false, fmt.Errorf("names cannot be combined with several resource types (%s); use TYPE/NAME arguments", args[0])
		}
		out[0].Names = names
	}
	return out, len(out) > 1, nil
}

// namespaceFor returns the namespace to address objects of k in.
func namespaceFor(k manifests.Kind, ns string) string {
	if !k.Namespaced {
		return ""
	}
	return ns
}

// kindOf returns the registered kind of obj.
func kindOf(obj manifests.Object) manifests.Kind {
	k, err := manifests.KindOf(obj)
	if err != nil {
		return manifests.Kind{Kind: obj.GetTypeMeta().Kind, Singular: strings.ToLower(obj.GetTypeMeta().Kind)}
	}
	return k
}

// objectName is kubectl's kind/name form, e.g. "pod/hello".
func objectName(obj manifests.Object) string {
	return qualifiedSingular(kindOf(obj)) + "/" + obj.GetObjectMeta().Name
}
