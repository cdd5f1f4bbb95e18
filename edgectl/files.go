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

// Size caps of -f input, so that a huge file, /dev/zero or an endless
// stdin is refused after reading a few megabytes: one file (or stdin) is
// at most what manifests.Decode accepts, all of them together at most
// maxTotalSourceBytes.
const (
	maxSourceBytes      = manifests.MaxInputBytes
	maxTotalSourceBytes = 64 << 20
)

// readLimited reads r to its end, refusing more than max bytes.
func readLimited(name string, r io.Reader, max int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes (%d MiB), the limit of one manifest file: split it into several files", name, max, max>>20)
	}
	return data, nil
}

// readFileLimited reads a file of at most max bytes.
func readFileLimited(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	return readLimited(path, f, max)
}

// readSources reads every -f argument: "-" is stdin, a directory holds
// *.yaml, *.yml and *.json files (recursively with recursive).
func readSources(stdin io.Reader, paths []string, recursive bool) ([]manifestSource, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("must specify one of -f")
	}
	var out []manifestSource
	total := 0
	add := func(src manifestSource) error {
		if total += len(src.Data); total > maxTotalSourceBytes {
			return fmt.Errorf("%s: the files given with -f hold more than %d MiB together: apply them in several runs", src.Name, maxTotalSourceBytes>>20)
		}
		out = append(out, src)
		return nil
	}
	stdinUsed := false
	for _, p := range paths {
		if p == "-" {
			if stdinUsed {
				return nil, fmt.Errorf("-f - given more than once")
			}
			stdinUsed = true
			data, err := readLimited("STDIN", stdin, maxSourceBytes)
			if err != nil {
				return nil, err
			}
			if err := add(manifestSource{Name: "STDIN", Data: data}); err != nil {
				return nil, err
			}
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("the path %q does not exist", p)
		}
		if !fi.IsDir() {
			data, err := readFileLimited(p, maxSourceBytes)
			if err != nil {
				return nil, err
			}
			if err := add(manifestSource{Name: p, Data: data}); err != nil {
				return nil, err
			}
			continue
		}
		files, err := dirManifests(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := readFileLimited(f, maxSourceBytes)
			if err != nil {
				return nil, err
			}
			if err := add(manifestSource{Name: f, Data: data}); err != nil {
				return nil, err
			}
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
