package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// blobStore serves the configs and layers of the built images. Blobs are
// content addressed, so one store serves every repository.
type blobStore map[v1.Hash][]byte

func (s blobStore) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	b, ok := s[h]
	if !ok {
		return nil, registry.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s blobStore) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	b, ok := s[h]
	if !ok {
		return 0, registry.ErrNotFound
	}
	return int64(len(b)), nil
}

func blobsOf(images []*image) blobStore {
	s := blobStore{}
	for _, img := range images {
		s[sha(img.config)] = img.config
		for _, l := range img.layers {
			s[l.digest] = l.blob
		}
	}
	return s
}

// newRegistry returns a read-only registry (distribution API v2) that serves
// every image under each of its names, at the upstream path without the host:
// registry.k8s.io/pause:3.9 is /v2/pause/manifests/3.9. Requests are logged
// to logger.
func newRegistry(images []*image, logger *log.Logger) (http.Handler, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	reg := registry.New(registry.WithBlobHandler(blobsOf(images)), registry.Logger(logger))
	for _, img := range images {
		for _, n := range img.names {
			repo, tag, err := repoAndTag(n)
			if err != nil {
				return nil, err
			}
			req := httptest.NewRequest(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, bytes.NewReader(img.manifest))
			req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				return nil, fmt.Errorf("store manifest of %s: %d %s", n, rec.Code, rec.Body)
			}
		}
	}
	return readOnly(reg), nil
}

// readOnly refuses uploads and deletes: the images are fixed at start-up.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			fmt.Fprint(w, `{"errors":[{"code":"UNSUPPORTED","message":"this test registry is read-only"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// writeOCILayout writes every image as an OCI image layout in dir, each
// manifest annotated with its names (org.opencontainers.image.ref.name, and
// io.containerd.image.name for ctr import), one index entry per name.
func writeOCILayout(dir string, images []*image) error {
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return err
	}
	write := func(b []byte) error {
		return os.WriteFile(filepath.Join(blobDir, sha(b).Hex), b, 0o644)
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for h, b := range blobsOf(images) {
		if err := os.WriteFile(filepath.Join(blobDir, h.Hex), b, 0o644); err != nil {
			return err
		}
	}
	for _, img := range images {
		if err := write(img.manifest); err != nil {
			return err
		}
		for _, n := range img.names {
			_, tag, _ := repoAndTag(n)
			index.Manifests = append(index.Manifests, v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Size:      int64(len(img.manifest)),
				Digest:    img.digest,
				Platform:  &v1.Platform{OS: "linux", Architecture: "amd64"},
				Annotations: map[string]string{
					"org.opencontainers.image.ref.name": tag,
					"io.containerd.image.name":          n,
				},
			})
		}
	}
	ib, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), append(ib, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`+"\n"), 0o644)
}
