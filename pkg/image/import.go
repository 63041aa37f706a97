package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/klog/v2"
)

// Annotations naming an image in an OCI archive.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Import reads an image archive from r and stores its images with their
// names, like `ctr images import`: a docker-archive (`docker save`:
// manifest.json, repositories, layer tars) or an OCI archive (oci-layout,
// index.json, blobs/), or docker's newer save format, which is both. Names
// come from manifest.json RepoTags and from the io.containerd.image.name
// annotation (or org.opencontainers.image.ref.name when it is a full name),
// normalised like pulls. Multi-platform indexes are imported for the store's
// platform.
//
// The archive is read once as a stream: every file goes straight into the
// content store under its own digest, and the archive's indexes are
// interpreted afterwards, so no temporary copy of the archive is needed.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]*Image, error) {
	logger := klog.FromContext(ctx)
	l := s.newLease()
	defer func() {
		l.release()
		// Archive files that are not blobs of an image (manifest.json...)
		// were stored too; drop them.
		s.collect(ctx)
	}()
	a, err := s.readArchive(ctx, l, r)
	if err != nil {
		return nil, err
	}
	var out []*Image
	seen := map[string]int{}
	add := func(img *Image) {
		if i, ok := seen[img.ID]; ok {
			out[i] = img
			return
		}
		seen[img.ID] = len(out)
		out = append(out, img)
	}
	if _, ok := a.files["index.json"]; ok {
		imgs, err := s.importOCI(ctx, l, a)
		if err != nil {
			return nil, err
		}
		for _, img := range imgs {
			add(img)
		}
	}
	if _, ok := a.files["manifest.json"]; ok {
		imgs, err := s.importDocker(ctx, l, a)
		if err != nil {
			return nil, err
		}
		for _, img := range imgs {
			add(img)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("archive has no images (no index.json or manifest.json): %w", errdefs.ErrInvalidArgument)
	}
	for _, img := range out {
		logger.V(2).Info("Imported image", "imageID", img.ID, "repoTags", img.RepoTags)
	}
	return out, nil
}

type archiveFile struct {
	digest string
	size   int64
}

type archive struct {
	files    map[string]archiveFile
	symlinks map[string]string
}

func (s *Store) readArchive(ctx context.Context, l *lease, r io.Reader) (*archive, error) {
	a := &archive{files: map[string]archiveFile{}, symlinks: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read image archive: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		name, ok := cleanName(hdr.Name)
		if !ok {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			// Old docker saves link repeated layers to one copy.
			a.symlinks[name] = path.Join(path.Dir(name), hdr.Linkname)
			continue
		case tar.TypeReg, tar.TypeRegA:
		default:
			continue
		}
		w, err := s.content.writer()
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Close()
			return nil, fmt.Errorf("read %s from image archive: %w: %w", name, err, errdefs.ErrDataLoss)
		}
		d := w.digest()
		a.files[name] = archiveFile{digest: d, size: w.size}
		// Leased before it appears, so a collection cannot take it.
		l.add("blob:" + d)
		if s.content.has(d) {
			w.Close()
			continue
		}
		if _, err := w.commit(); err != nil {
			w.Close()
			return nil, err
		}
	}
	return a, nil
}

// lookup finds an archive file by path, following the archive's symlinks.
func (a *archive) lookup(name string) (archiveFile, error) {
	name, _ = cleanName(name)
	for range 16 {
		if f, ok := a.files[name]; ok {
			return f, nil
		}
		target, ok := a.symlinks[name]
		if !ok {
			break
		}
		name, _ = cleanName(target)
	}
	return archiveFile{}, fmt.Errorf("image archive lacks %s: %w", name, errdefs.ErrInvalidArgument)
}

func (s *Store) readArchiveJSON(a *archive, name string, v any) error {
	f, err := a.lookup(name)
	if err != nil {
		return err
	}
	data, err := s.content.readAll(f.digest, maxManifestSize)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parse %s: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// archiveSource is the blobSource of imports: the archive's files were
// stored as they were read, so a blob the image needs is stored or missing
// from the archive.
type archiveSource struct {
	s *Store
	l *lease
}

func (a archiveSource) fetch(_ context.Context, d string, _ int64) error {
	a.l.add("blob:" + d)
	if !a.s.content.has(d) {
		return fmt.Errorf("image archive lacks blob %s: %w", d, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) importOCI(ctx context.Context, l *lease, a *archive) ([]*Image, error) {
	logger := klog.FromContext(ctx)
	// A blob file whose content does not match its name is corruption,
	// not a missing blob.
	for name, f := range a.files {
		if rest, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && f.digest != "sha256:"+rest {
			return nil, fmt.Errorf("image archive file %s has digest %s: %w", name, f.digest, errdefs.ErrDataLoss)
		}
	}
	var idx v1.IndexManifest
	if err := s.readArchiveJSON(a, "index.json", &idx); err != nil {
		return nil, err
	}
	var out []*Image
	for _, desc := range idx.Manifests {
		var names []string
		for _, n := range archiveNames(desc.Annotations) {
			r, err := ParseRef(n)
			if err != nil {
				logger.Info("Ignoring malformed image name in archive", "name", n, "err", err)
				continue
			}
			names = append(names, r.Name()+"@"+desc.Digest.String())
			if r.Digest == "" {
				names = append(names, r.Name()+":"+r.Tag)
			}
		}
		img, err := s.importManifest(ctx, l, desc, names)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// archiveNames gives an index entry's image name: containerd's annotation,
// else the OCI ref name when it is a full reference rather than a bare tag.
func archiveNames(ann map[string]string) []string {
	if n := ann[annotationContainerdName]; n != "" {
		return []string{n}
	}
	if n := ann[annotationRefName]; strings.ContainsAny(n, "/:@") {
		return []string{n}
	}
	return nil
}

func (s *Store) importManifest(ctx context.Context, l *lease, desc v1.Descriptor, names []string) (*Image, error) {
	d := desc.Digest.String()
	if err := validDigest(d); err != nil {
		return nil, err
	}
	blobs := []string{d}
	for depth := 0; ; depth++ {
		if err := (archiveSource{s, l}).fetch(ctx, d, desc.Size); err != nil {
			return nil, err
		}
		raw, err := s.content.readAll(d, maxManifestSize)
		if err != nil {
			return nil, err
		}
		mt := desc.MediaType
		if !mt.IsIndex() && !mt.IsImage() {
			mt = sniffMediaType(raw)
		}
		child, m, err := parseManifestBlob(raw, mt, s.platform, s.limits)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d, err)
		}
		if m == nil {
			if depth >= 2 {
				return nil, fmt.Errorf("index nesting too deep: %w", errdefs.ErrInvalidArgument)
			}
			desc = *child
			d = desc.Digest.String()
			blobs = append(blobs, d)
			continue
		}
		rec, err := s.fetchContent(ctx, l, m, archiveSource{s, l})
		if err != nil {
			return nil, err
		}
		rec.ManifestDigest = d
		rec.Blobs = append(rec.Blobs, blobs...)
		return s.commit(ctx, rec, names)
	}
}

// dockerManifest is one entry of a docker-archive manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Store) importDocker(ctx context.Context, l *lease, a *archive) ([]*Image, error) {
	logger := klog.FromContext(ctx)
	var entries []dockerManifest
	if err := s.readArchiveJSON(a, "manifest.json", &entries); err != nil {
		return nil, err
	}
	var out []*Image
	for _, e := range entries {
		cfg, err := a.lookup(e.Config)
		if err != nil {
			return nil, err
		}
		// A docker archive has no registry manifest: describe its files as
		// one. Layer compression is sniffed when unpacking.
		m := &v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.DockerManifestSchema2,
			Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: cfg.size, Digest: mustHash(cfg.digest)},
		}
		for _, lp := range e.Layers {
			lf, err := a.lookup(lp)
			if err != nil {
				return nil, err
			}
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerUncompressedLayer, Size: lf.size, Digest: mustHash(lf.digest)})
		}
		var names []string
		for _, t := range e.RepoTags {
			r, err := ParseRef(t)
			if err != nil {
				logger.Info("Ignoring malformed image name in archive", "name", t, "err", err)
				continue
			}
			if r.Digest == "" {
				names = append(names, r.Name()+":"+r.Tag)
			}
		}
		rec, err := s.fetchContent(ctx, l, m, archiveSource{s, l})
		if err != nil {
			return nil, err
		}
		img, err := s.commit(ctx, rec, names)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// mustHash converts a digest this package computed itself.
func mustHash(d string) v1.Hash {
	h, err := v1.NewHash(d)
	if err != nil {
		panic(fmt.Sprintf("computed digest %q does not parse: %v", d, err))
	}
	return h
}
