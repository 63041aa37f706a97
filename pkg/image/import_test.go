package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

func zstdLayer(t testing.TB, entries []tarEntry) v1.Layer {
	t.Helper()
	raw := makeTar(t, entries)
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(raw)
	zw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dockerArchive(t *testing.T, refs map[string]v1.Image) []byte {
	t.Helper()
	m := map[name.Reference]v1.Image{}
	for r, img := range refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		m[ref] = img
	}
	var buf bytes.Buffer
	if err := tarball.MultiRefWrite(m, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarDir packs dir into a tar stream, as `tar -C dir -c .` would.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, _ := d.Info()
		hdr, _ := tar.FileInfoHeader(fi, "")
		hdr.Name = rel
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			tw.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

func TestImportDockerArchive(t *testing.T) {
	img := testImage(t, v1.Config{Cmd: []string{"kind"}}, baseLayer(t), zstdLayer(t, []tarEntry{{name: "z", body: "zstd"}}))
	other := testImage(t, v1.Config{Cmd: []string{"other"}}, baseLayer(t))
	data := dockerArchive(t, map[string]v1.Image{
		"kindest/app:dev":             img,
		"localhost:5000/app:v1":       img,
		"registry.k8s.io/other:1.0.0": other,
	})
	s := newTestStore(t, Options{})
	imgs, err := s.Import(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("imported %d images, want 2", len(imgs))
	}
	got, err := s.Get("kindest/app:dev")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, img) {
		t.Errorf("ID %s, want %s", got.ID, configDigest(t, img))
	}
	if want := []string{"docker.io/kindest/app:dev", "localhost:5000/app:v1"}; !slices.Equal(got.RepoTags, want) {
		t.Errorf("RepoTags %v, want %v", got.RepoTags, want)
	}
	if !slices.Equal(got.Config.Cmd, []string{"kind"}) || len(got.DiffIDs) != 2 {
		t.Errorf("config %+v diffIDs %v", got.Config, got.DiffIDs)
	}
	if _, err := s.Get("registry.k8s.io/other:1.0.0"); err != nil {
		t.Errorf("other image: %v", err)
	}
	if len(s.layers) != 2 {
		t.Errorf("%d layers unpacked, want 2 (the base layer is shared)", len(s.layers))
	}
	// Archive files that are no image's blobs are not kept.
	blobs, _ := s.content.list()
	want := map[string]bool{}
	for _, im := range s.List() {
		rec := s.images[im.ID]
		for _, b := range rec.allBlobs() {
			want[b] = true
		}
	}
	if len(blobs) != len(want) {
		t.Errorf("%d blobs stored, %d referenced", len(blobs), len(want))
	}
	assertNoPartial(t, s)

	// Importing again is harmless.
	if _, err := s.Import(context.Background(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if len(s.List()) != 2 {
		t.Errorf("re-import changed the image count: %d", len(s.List()))
	}

	// Both tags move to a new image at once: the old one keeps neither.
	moved := testImage(t, v1.Config{Cmd: []string{"moved"}}, baseLayer(t))
	if _, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, map[string]v1.Image{
		"kindest/app:dev": moved, "localhost:5000/app:v1": moved,
	}))); err != nil {
		t.Fatal(err)
	}
	if old, err := s.Get(configDigest(t, img)); err != nil || len(old.RepoTags) != 0 {
		t.Errorf("old image after both tags moved: %+v %v", old, err)
	}
	s2 := newTestStore(t, Options{Root: s.root})
	if got, err := s2.Get("kindest/app:dev"); err != nil || got.ID != configDigest(t, moved) {
		t.Errorf("after reload kindest/app:dev = %v, %v", got, err)
	}
}

func TestImportOCIArchive(t *testing.T) {
	named := testImage(t, v1.Config{Cmd: []string{"named"}}, baseLayer(t))
	tagOnly := testImage(t, v1.Config{Cmd: []string{"tag-only"}}, baseLayer(t), testLayer(t, []tarEntry{{name: "t", body: "t"}}))
	refName := testImage(t, v1.Config{Cmd: []string{"ref-name"}}, testLayer(t, []tarEntry{{name: "r", body: "r"}}))
	amd := testImage(t, v1.Config{Cmd: []string{"amd64"}}, testLayer(t, []tarEntry{{name: "a", body: "a"}}))
	arm := testImage(t, v1.Config{Cmd: []string{"arm64"}}, testLayer(t, []tarEntry{{name: "b", body: "b"}}))
	multi := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	build := func(t *testing.T) string {
		dir := t.TempDir()
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []struct {
			img v1.Image
			ann map[string]string
		}{
			{named, map[string]string{annotationContainerdName: "docker.io/library/named:1", annotationRefName: "1"}},
			{tagOnly, map[string]string{annotationRefName: "latest"}},
			{refName, map[string]string{annotationRefName: "example.com/ref/name:2"}},
		} {
			if err := p.AppendImage(a.img, layout.WithAnnotations(a.ann)); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.AppendIndex(multi, layout.WithAnnotations(map[string]string{annotationContainerdName: "example.com/multi:3"})); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	t.Run("ok", func(t *testing.T) {
		s := newTestStore(t, Options{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
		imgs, err := s.Import(context.Background(), bytes.NewReader(tarDir(t, build(t))))
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 4 {
			t.Fatalf("imported %d images, want 4", len(imgs))
		}
		nd, _ := named.Digest()
		for ref, want := range map[string]v1.Image{
			"named:1":                                named,
			"docker.io/library/named@" + nd.String(): named,
			"example.com/ref/name:2":                 refName,
			"example.com/multi:3":                    amd,
			configDigest(t, tagOnly):                 tagOnly,
		} {
			got, err := s.Get(ref)
			if err != nil || got.ID != configDigest(t, want) {
				t.Errorf("Get(%s) = %v, %v", ref, got, err)
			}
		}
		if got, _ := s.Get(configDigest(t, tagOnly)); len(got.RepoTags) != 0 {
			t.Errorf("a bare ref.name tag became a name: %v", got.RepoTags)
		}
		assertNoPartial(t, s)
	})

	t.Run("corrupt blob", func(t *testing.T) {
		dir := build(t)
		ld, _ := tagOnly.Manifest()
		p := filepath.Join(dir, "blobs", "sha256", ld.Layers[1].Digest.Hex)
		if err := os.WriteFile(p, []byte("corrupt"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := newTestStore(t, Options{})
		if _, err := s.Import(context.Background(), bytes.NewReader(tarDir(t, dir))); !errdefs.IsDataLoss(err) {
			t.Fatalf("err = %v, want DataLoss", err)
		}
		if len(s.List()) != 0 || len(s.layers) != 0 {
			t.Errorf("import left %d images, %d layers", len(s.List()), len(s.layers))
		}
		if blobs, _ := s.content.list(); len(blobs) != 0 {
			t.Errorf("import left %d blobs", len(blobs))
		}
		assertNoPartial(t, s)
	})

	t.Run("not an archive", func(t *testing.T) {
		s := newTestStore(t, Options{})
		for _, data := range [][]byte{[]byte("garbage, not a tar at all, long enough to fill a header block?"), makeTar(t, []tarEntry{{name: "x", body: "y"}})} {
			if _, err := s.Import(context.Background(), bytes.NewReader(data)); !errdefs.IsInvalidArgument(err) {
				t.Errorf("err = %v, want InvalidArgument", err)
			}
		}
		if blobs, _ := s.content.list(); len(blobs) != 0 {
			t.Errorf("import left %d blobs", len(blobs))
		}
	})
}
