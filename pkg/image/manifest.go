package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Interpreting manifests, indexes and image configs. Pulls and imports share
// these functions; they are pure (bytes in, values or errdefs-wrapped errors
// out), which is what lets the fuzz targets run them on arbitrary input.

// parseManifestBlob interprets one manifest blob of media type mt: an index
// yields the descriptor of the entry for platform (child), an image manifest
// yields the manifest, checked by checkManifest (m). Exactly one is non-nil
// when err is nil.
func parseManifestBlob(raw []byte, mt types.MediaType, platform v1.Platform, lim limits) (child *v1.Descriptor, m *v1.Manifest, err error) {
	if len(raw) > maxManifestSize {
		return nil, nil, fmt.Errorf("manifest is %d bytes, over the %d-byte limit: %w", len(raw), maxManifestSize, errdefs.ErrInvalidArgument)
	}
	switch {
	case mt.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, nil, fmt.Errorf("parse index: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		d, err := selectManifest(idx, platform)
		if err != nil {
			return nil, nil, err
		}
		// The digest becomes a registry path and a file name.
		if err := validDigest(d.Digest.String()); err != nil {
			return nil, nil, fmt.Errorf("index entry: %w", err)
		}
		return &d, nil, nil
	case mt.IsSchema1():
		return nil, nil, fmt.Errorf("docker schema 1 manifests are not supported: %w", errdefs.ErrNotImplemented)
	case !mt.IsImage():
		return nil, nil, fmt.Errorf("not an image manifest (%s): %w", mt, errdefs.ErrInvalidArgument)
	}
	m, err = v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("parse manifest: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := checkManifest(m, lim); err != nil {
		return nil, nil, err
	}
	return nil, m, nil
}

// sniffMediaType reads the media type of a manifest blob whose descriptor
// does not give one: some archive writers leave it to the blob itself. A
// blob with a "manifests" list and no media type is an OCI index; anything
// else without one is taken for an OCI image manifest.
func sniffMediaType(raw []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests []any           `json:"manifests"`
	}
	// A blob that is not JSON leaves the probe empty, and then fails to
	// parse as a manifest with a clear error.
	_ = json.Unmarshal(raw, &probe)
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return types.OCIImageIndex
	default:
		return types.OCIManifestSchema1
	}
}

// checkManifest validates what an image manifest declares before anything it
// names is fetched: media types, digests (they become file names), and sizes
// against the bounds, so that a manifest claiming a 1 GiB config or a 100 GiB
// layer is refused before a byte of it is downloaded.
func checkManifest(m *v1.Manifest, lim limits) error {
	if m.Config.MediaType != "" && m.Config.MediaType != types.OCIConfigJSON && m.Config.MediaType != types.DockerConfigJSON {
		return fmt.Errorf("not a container image: config media type %s: %w", m.Config.MediaType, errdefs.ErrInvalidArgument)
	}
	cfgDigest := m.Config.Digest.String()
	if err := validDigest(cfgDigest); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	// A negative size would also lift the read bound of the download.
	if m.Config.Size < 0 || m.Config.Size > maxConfigSize {
		return fmt.Errorf("image config %s declares %d bytes, not within 0-%d: %w", cfgDigest, m.Config.Size, maxConfigSize, errdefs.ErrInvalidArgument)
	}
	for _, ld := range m.Layers {
		d := ld.Digest.String()
		if err := validDigest(d); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		if ld.MediaType != "" && !strings.Contains(string(ld.MediaType), "tar") {
			return fmt.Errorf("layer %s has media type %s, not a tar: %w", d, ld.MediaType, errdefs.ErrNotImplemented)
		}
		if strings.Contains(string(ld.MediaType), "encrypted") {
			return fmt.Errorf("layer %s is encrypted: %w", d, errdefs.ErrNotImplemented)
		}
		if ld.Size < 0 || ld.Size > lim.layerSize {
			return fmt.Errorf("layer %s declares %d bytes, not within 0-%d: %w", d, ld.Size, lim.layerSize, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// newImageRecord makes the record (without names) of the image that
// manifest m, already checked, describes, from its config blob.
func newImageRecord(m *v1.Manifest, cfgRaw []byte) (*imageRecord, error) {
	cfgDigest := m.Config.Digest.String()
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return nil, fmt.Errorf("parse image config %s: %w: %w", cfgDigest, err, errdefs.ErrInvalidArgument)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image config lists %d layers, manifest %d: %w", len(cf.RootFS.DiffIDs), len(m.Layers), errdefs.ErrInvalidArgument)
	}
	rec := &imageRecord{
		Image: Image{ID: cfgDigest, Size: m.Config.Size, Config: convertConfig(cf.Config)},
		Blobs: []string{cfgDigest},
	}
	for i, ld := range m.Layers {
		diffID := cf.RootFS.DiffIDs[i].String()
		// The diff ID names the unpacked layer on disk.
		if err := validDigest(diffID); err != nil {
			return nil, fmt.Errorf("image config diff ID: %w", err)
		}
		rec.Layers = append(rec.Layers, layerBlob{Digest: ld.Digest.String(), Size: ld.Size, MediaType: string(ld.MediaType)})
		rec.DiffIDs = append(rec.DiffIDs, diffID)
		// No overflow: a 4 MiB manifest lists fewer than 2^16 layers of at
		// most layerSize each.
		rec.Size += ld.Size
	}
	return rec, nil
}

func convertConfig(c v1.Config) ImageConfig {
	return ImageConfig{
		User:         c.User,
		Env:          c.Env,
		Entrypoint:   c.Entrypoint,
		Cmd:          c.Cmd,
		WorkingDir:   c.WorkingDir,
		StopSignal:   c.StopSignal,
		Volumes:      c.Volumes,
		Labels:       c.Labels,
		ExposedPorts: c.ExposedPorts,
	}
}

// selectManifest picks the index entry for platform want: exact variant
// first, then any variant when none is wanted, then an entry without a
// variant, then an entry without a platform at all.
func selectManifest(idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	best, bestScore := -1, -1
	for i, d := range idx.Manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		if score := platformScore(d.Platform, want); score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return v1.Descriptor{}, fmt.Errorf("no image for platform %s in index: %w", want.String(), errdefs.ErrNotFound)
	}
	return idx.Manifests[best], nil
}

func platformScore(p *v1.Platform, want v1.Platform) int {
	if p == nil {
		return 0
	}
	arch := normArch(p.Architecture)
	if p.OS != want.OS || arch != normArch(want.Architecture) {
		return -1
	}
	pv, wv := normVariant(arch, p.Variant), normVariant(arch, want.Variant)
	switch {
	case pv == wv:
		return 4
	case wv == "":
		return 3
	case pv == "":
		return 2
	default:
		return -1
	}
}

func normArch(a string) string {
	switch a {
	case "x86_64", "x86-64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return a
}

func normVariant(arch, v string) string {
	if arch == "arm64" && v == "v8" {
		return ""
	}
	return v
}
