package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ErrNotArchive: the file is neither a docker-save tarball nor an OCI layout.
var ErrNotArchive = errors.New("not an image archive (docker save tarball or OCI image layout)")

// ReadArchive opens an image archive: a docker-save tarball (manifest.json),
// an OCI image layout tarball (oci-layout, index.json) or an OCI image
// layout directory. When the archive holds an index, the linux/GOARCH image
// is taken. Call cleanup once done with the image (its blobs are read
// lazily from the archive).
func ReadArchive(ctx context.Context, path string) (img v1.Image, cleanup func(), err error) {
	noop := func() {}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, noop, err
	}
	if fi.IsDir() {
		img, err := fromLayout(path)
		return img, noop, err
	}
	kind, err := archiveKind(path)
	if err != nil {
		return nil, noop, err
	}
	switch kind {
	case "docker":
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return nil, noop, fmt.Errorf("%s: docker image archive: %w", path, err)
		}
		return img, noop, nil
	case "oci":
		dir, err := os.MkdirTemp("", "edgeorch-oci-layout-")
		if err != nil {
			return nil, noop, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		f, err := os.Open(path)
		if err != nil {
			cleanup()
			return nil, noop, err
		}
		err = extractTar(ctx, f, dir)
		f.Close()
		if err != nil {
			cleanup()
			return nil, noop, fmt.Errorf("%s: unpack OCI layout: %w", path, err)
		}
		img, err := fromLayout(dir)
		if err != nil {
			cleanup()
			return nil, noop, fmt.Errorf("%s: %w", path, err)
		}
		return img, cleanup, nil
	}
	return nil, noop, fmt.Errorf("%s: %w", path, ErrNotArchive)
}

// archiveKind tells a docker-save tarball ("docker") from an OCI layout one
// ("oci") by the files it holds; "" when it is neither.
func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	oci := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if oci {
				break
			}
			return "", nil // not a tar file
		}
		switch name, _ := cleanEntryName(hdr.Name); name {
		case "manifest.json":
			return "docker", nil // docker save (newer ones also hold an OCI layout)
		case "oci-layout":
			oci = true
		}
	}
	if oci {
		return "oci", nil
	}
	return "", nil
}

// fromLayout returns the image of an OCI image layout directory.
func fromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI image layout: %w", err)
	}
	for depth := 0; depth < 4; depth++ {
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("OCI image layout: %w", err)
		}
		var any, matching []v1.Descriptor
		for _, d := range im.Manifests {
			if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
				continue
			}
			switch {
			case d.Platform == nil:
				any = append(any, d)
			case d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH:
				matching = append(matching, d)
			}
		}
		if len(matching) == 0 {
			matching = any
		}
		if len(matching) > 1 {
			return nil, fmt.Errorf("OCI image layout holds %d images; give an archive of one", len(matching))
		}
		var pick *v1.Descriptor
		if len(matching) == 1 {
			pick = &matching[0]
		}
		if pick == nil {
			return nil, fmt.Errorf("OCI image layout has no linux/%s image", runtime.GOARCH)
		}
		if pick.MediaType.IsImage() {
			return idx.Image(pick.Digest)
		}
		if idx, err = idx.ImageIndex(pick.Digest); err != nil {
			return nil, fmt.Errorf("OCI image layout: %w", err)
		}
	}
	return nil, fmt.Errorf("OCI image layout: indexes nested too deep")
}
