package imagetest

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of a wasm module OCI artifact (wasm-to-oci layout).
const (
	WasmLayerMediaType  types.MediaType = "application/vnd.wasm.content.layer.v1+wasm"
	WasmConfigMediaType types.MediaType = "application/vnd.wasm.config.v0+json"
)

// WasmArtifact builds a wasm module artifact as wasm-to-oci pushes it: an
// OCI manifest with config media type WasmConfigMediaType and one layer of
// media type layerType (WasmLayerMediaType when empty) holding module.
func WasmArtifact(t testing.TB, module []byte, layerType types.MediaType) v1.Image {
	t.Helper()
	if layerType == "" {
		layerType = WasmLayerMediaType
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, WasmConfigMediaType)
	img, err := mutate.AppendLayers(img, static.NewLayer(module, layerType))
	if err != nil {
		t.Fatalf("wasm artifact: %v", err)
	}
	return img
}
