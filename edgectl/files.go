package edgectl

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// manifestSource is one file (or stdin) given with -f.
type manifestSource struct {
	Name string // file path, or "STDIN"
	Data []byte
}

// manifestExts are the file extensions read from a directory.
var manifestExts = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// readSources reads every -f argument: "-" is stdin, a directory holds
// *.yaml, *.yml and *.json files (recursively with recursive).
func readSources(stdin io.Reader, paths []string, recursive bool) ([]manifestSource, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("must specify one of -f")
	}
	var out []manifestSource
	stdinUsed := false
	for _, p := range paths {
		if p == "-" {
			if stdinUsed {
				return nil, fmt.Errorf("-f - given more than once")
			}
			stdinUsed = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read STDIN: %w", err)
			}
			out = append(out, manifestSource{Name: "STDIN", Data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("the path %q does not exist", p)
		}
		if !fi.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			out = append(out, manifestSource{Name: p, Data: data})
			continue
		}
		files, err := dirManifests(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			out = append(out, manifestSource{Name: f, Data: data})
		}
	}
	return out, nil
}

func dirManifests(dir string, recursive bool) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && !recursive {
				return fs.SkipDir
			}
			return nil
		}
		if manifestExts[strings.ToLower(filepath.Ext(path))] {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	sort.Strings(files)
	return files, nil
}

// sourceObject is a decoded object and where it came from.
type sourceObject struct {
	Source string
	Object manifests.Object
}

// decodeSources decodes every source strictly; the first failure is an
// error naming the file, so that nothing is sent when any document is bad.
func decodeSources(srcs []manifestSource) ([]sourceObject, error) {
	var out []sourceObject
	for _, s := range srcs {
		objs, err := manifests.Decode(s.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		for _, obj := range objs {
			if err := manifests.SetKind(obj); err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
			out = append(out, sourceObject{Source: s.Name, Object: obj})
		}
	}
	return out, nil
}

// resolveNamespaces gives namespaced objects without a namespace ns, and
// rejects an object whose namespace differs from an explicit -n.
func resolveNamespaces(objs []sourceObject, ns string, explicit bool) error {
	for _, so := range objs {
		k, err := manifests.KindOf(so.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", so.Source, err)
		}
		meta := so.Object.GetObjectMeta()
		if !k.Namespaced {
			continue
		}
		switch {
		case meta.Namespace == "":
			meta.Namespace = ns
		case explicit && meta.Namespace != ns:
			return fmt.Errorf("%s: the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.", so.Source, meta.Namespace, ns, meta.Namespace)
		}
	}
	return nil
}

// validateObjects defaults and validates a copy of every object locally.
func validateObjects(objs []sourceObject) error {
	for _, so := range objs {
		cp := manifests.DeepCopy(so.Object)
		manifests.Default(cp)
		if err := manifests.Validate(cp); err != nil {
			return fmt.Errorf("%s: %s %q is invalid: %w", so.Source, so.Object.GetTypeMeta().Kind, so.Object.GetObjectMeta().Name, err)
		}
	}
	return nil
}

// namespacesFirst moves Namespace objects before the others, keeping order.
func namespacesFirst(objs []sourceObject) {
	sort.SliceStable(objs, func(i, j int) bool {
		_, ni := objs[i].Object.(*manifests.Namespace)
		_, nj := objs[j].Object.(*manifests.Namespace)
		return ni && !nj
	})
}
