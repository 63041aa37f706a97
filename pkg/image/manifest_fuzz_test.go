package image

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fuzzLimits are small so that the fuzzer reaches the bounds.
var fuzzLimits = limits{layerSize: 1 << 20, layerBytes: 1 << 20, layerEntries: 64}

// hasKind reports whether err carries one of the errdefs kinds the manifest
// code returns, which is what the CRI layer maps to a gRPC code.
func hasKind(err error) bool {
	return errdefs.IsInvalidArgument(err) || errdefs.IsNotImplemented(err) || errdefs.IsNotFound(err)
}

// manifestSeeds are real manifests, indexes and configs, and broken ones.
func manifestSeeds(t testing.TB) (manifests, configs [][]byte) {
	img := testImage(t, v1.Config{User: "1000:50", Env: []string{"A=1"}, Cmd: []string{"sh"}, Labels: map[string]string{"l": "v"}},
		baseLayer(t), testLayer(t, []tarEntry{{name: "app", body: "app"}}))
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
	rawIdx, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	variant := func(change func(m *v1.Manifest)) []byte {
		c := *m
		c.Layers = slices.Clone(m.Layers)
		change(&c)
		b, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	manifests = [][]byte{
		raw, rawIdx,
		variant(func(m *v1.Manifest) { m.Config.Size = 1 << 30 }),
		variant(func(m *v1.Manifest) { m.Config.Size = -1 }),
		variant(func(m *v1.Manifest) { m.Layers[0].Size = 1 << 40 }),
		variant(func(m *v1.Manifest) { m.Layers[0].MediaType = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" }),
		variant(func(m *v1.Manifest) { m.Config.MediaType = "application/vnd.cncf.helm.config.v1+json" }),
		[]byte(`{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}`),
		[]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}]}`),
		[]byte(`{"config":{"digest":"SHA256:AB","size":1},"layers":[{"digest":"sha512:00","size":1}]}`),
		[]byte(`null`), []byte(`{}`), []byte(`[]`), []byte("\x00\xff"),
	}
	configs = [][]byte{
		cfg,
		[]byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}`),
		[]byte(`{"rootfs":{"diff_ids":["md5:00","sha256:00"]},"config":{"User":"-1:x","Env":null}}`),
		[]byte(`null`), []byte(`{}`), []byte(`"x"`),
	}
	return manifests, configs
}

// FuzzManifest checks the interpretation of a manifest blob as pulls and
// imports do it (the media type as given, then as sniffed from the blob):
// no panic; failures carry an errdefs kind; success is either an index
// entry for the platform with a usable digest, or a manifest whose every
// declared size is within its bound and whose digests are usable.
func FuzzManifest(f *testing.F) {
	manifests, _ := manifestSeeds(f)
	for _, raw := range manifests {
		for _, mt := range []types.MediaType{types.OCIManifestSchema1, types.DockerManifestSchema2, types.OCIImageIndex,
			types.DockerManifestList, types.DockerManifestSchema1, ""} {
			f.Add(raw, string(mt), "amd64")
		}
		f.Add(raw, "", "arm64")
	}
	f.Fuzz(func(t *testing.T, raw []byte, mediaType, arch string) {
		platform := v1.Platform{OS: "linux", Architecture: arch}
		for _, mt := range []types.MediaType{types.MediaType(mediaType), sniffMediaType(raw)} {
			child, m, err := parseManifestBlob(raw, mt, platform, fuzzLimits)
			if err != nil {
				if !hasKind(err) {
					t.Fatalf("media type %q: error without an errdefs kind: %v", mt, err)
				}
				if child != nil || m != nil {
					t.Fatalf("media type %q: a result and an error", mt)
				}
				continue
			}
			switch {
			case (child == nil) == (m == nil):
				t.Fatalf("media type %q: want exactly one of an index entry and a manifest", mt)
			case child != nil:
				if !mt.IsIndex() {
					t.Fatalf("index entry from media type %q", mt)
				}
				if err := validDigest(child.Digest.String()); err != nil {
					t.Fatalf("index entry with digest %q", child.Digest)
				}
				if !child.MediaType.IsImage() && !child.MediaType.IsIndex() {
					t.Fatalf("index entry of media type %q", child.MediaType)
				}
				if platformScore(child.Platform, platform) < 0 {
					t.Fatalf("index entry for platform %+v, want %+v", child.Platform, platform)
				}
			default:
				if !mt.IsImage() {
					t.Fatalf("manifest from media type %q", mt)
				}
				checkCheckedManifest(t, m)
			}
		}
	})
}

func checkCheckedManifest(t *testing.T, m *v1.Manifest) {
	t.Helper()
	if err := validDigest(m.Config.Digest.String()); err != nil {
		t.Fatalf("accepted config digest %q", m.Config.Digest)
	}
	if m.Config.Size < 0 || m.Config.Size > maxConfigSize {
		t.Fatalf("accepted config size %d", m.Config.Size)
	}
	for _, l := range m.Layers {
		if err := validDigest(l.Digest.String()); err != nil {
			t.Fatalf("accepted layer digest %q", l.Digest)
		}
		if l.Size < 0 || l.Size > fuzzLimits.layerSize {
			t.Fatalf("accepted layer size %d", l.Size)
		}
	}
}

// FuzzImageConfig checks the making of an image record from a manifest and
// its config blob: no panic; failures carry an errdefs kind; a record has
// the config digest for ID, one usable diff ID per layer, the sizes added
// up, and keeps its identity through the JSON it is stored as.
func FuzzImageConfig(f *testing.F) {
	manifests, configs := manifestSeeds(f)
	for _, m := range manifests {
		for _, c := range configs {
			f.Add(m, c)
		}
	}
	f.Fuzz(func(t *testing.T, rawManifest, rawConfig []byte) {
		_, m, err := parseManifestBlob(rawManifest, types.OCIManifestSchema1, v1.Platform{OS: "linux", Architecture: "amd64"}, fuzzLimits)
		if err != nil {
			return
		}
		checkCheckedManifest(t, m)
		rec, err := newImageRecord(m, rawConfig)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error without InvalidArgument: %v", err)
			}
			return
		}
		if rec.ID != m.Config.Digest.String() {
			t.Fatalf("ID %s, want the config digest %s", rec.ID, m.Config.Digest)
		}
		if len(rec.Layers) != len(m.Layers) || len(rec.DiffIDs) != len(m.Layers) {
			t.Fatalf("%d layers and %d diff IDs for %d manifest layers", len(rec.Layers), len(rec.DiffIDs), len(m.Layers))
		}
		size := m.Config.Size
		for i, d := range rec.DiffIDs {
			if err := validDigest(d); err != nil {
				t.Fatalf("diff ID %q accepted", d)
			}
			size += m.Layers[i].Size
		}
		if rec.Size != size {
			t.Fatalf("Size %d, want %d", rec.Size, size)
		}
		for _, b := range rec.allBlobs() {
			if err := validDigest(b); err != nil {
				t.Fatalf("blob %q accepted", b)
			}
		}
		rec.Image.User()
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("encode record: %v", err)
		}
		var back imageRecord
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("decode record: %v", err)
		}
		if back.ID != rec.ID || back.Size != rec.Size || !slices.Equal(back.DiffIDs, rec.DiffIDs) || !slices.Equal(back.Layers, rec.Layers) {
			t.Fatalf("record changed through JSON: %+v, want %+v", back, rec)
		}
	})
}
