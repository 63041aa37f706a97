package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the time stamp of every tar entry and image config, so that a
// build does not depend on when it ran.
var epoch = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// defaultPath is the PATH of every image, the one docker sets by default.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// entry is one file system object of a layer.
type entry struct {
	typ      byte // tar.TypeReg, TypeDir, TypeSymlink, TypeLink
	mode     int64
	uid, gid int
	data     []byte
	linkname string // symlink target, or the path a hard link points at
}

// layerBuilder collects entries and writes them as a reproducible tar: fixed
// mtimes, no user or group names, parents before children, every regular
// file before the hard links that refer to it.
type layerBuilder struct {
	entries map[string]*entry
}

func newLayer() *layerBuilder { return &layerBuilder{entries: map[string]*entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (b *layerBuilder) add(p string, e *entry) {
	p = clean(p)
	for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := b.entries[dir]; !ok {
			b.entries[dir] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
	b.entries[p] = e
}

// dir adds a directory with the given mode owned by uid:gid.
func (b *layerBuilder) dir(p string, mode int64, uid, gid int) *layerBuilder {
	b.add(p, &entry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid})
	return b
}

// file adds a regular file owned by root.
func (b *layerBuilder) file(p string, mode int64, data []byte) *layerBuilder {
	b.add(p, &entry{typ: tar.TypeReg, mode: mode, data: data})
	return b
}

// hardlink adds p as a hard link to target, a regular file of the same layer.
func (b *layerBuilder) hardlink(p, target string) *layerBuilder {
	b.add(p, &entry{typ: tar.TypeLink, mode: 0o755, linkname: clean(target)})
	return b
}

func (b *layerBuilder) symlink(p, target string) *layerBuilder {
	b.add(p, &entry{typ: tar.TypeSymlink, mode: 0o777, linkname: target})
	return b
}

// layer is a built layer: its compressed blob and the digest of the tar.
type layer struct {
	blob   []byte // tar+gzip
	diffID v1.Hash
	digest v1.Hash
}

func (b *layerBuilder) build() (*layer, error) {
	names := make([]string, 0, len(b.entries))
	for n := range b.entries {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		li, lj := b.entries[names[i]].typ == tar.TypeLink, b.entries[names[j]].typ == tar.TypeLink
		if li != lj {
			return lj
		}
		return names[i] < names[j]
	})

	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, n := range names {
		e := b.entries[n]
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     n,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  epoch,
			Linkname: e.linkname,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		case tar.TypeLink:
			t, ok := b.entries[e.linkname]
			if !ok || t.typ != tar.TypeReg {
				return nil, fmt.Errorf("hard link %s: target %s is not a regular file of this layer", n, e.linkname)
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}

	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression) // header: no name, mtime 0
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &layer{blob: gz.Bytes(), diffID: sha(tarBuf.Bytes()), digest: sha(gz.Bytes())}, nil
}

func sha(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// imageSpec says what an image is; build turns it into blobs.
type imageSpec struct {
	names   []string // upstream references, host included: all name this one image
	about   string   // one line for `list`
	layers  []*layer
	history []string // one CreatedBy per layer
	config  v1.Config
}

// image is a built image: an OCI manifest, its config and layers.
type image struct {
	names    []string
	about    string
	manifest []byte
	config   []byte
	layers   []*layer
	digest   v1.Hash // of manifest
}

func (s *imageSpec) build() (*image, error) {
	cf := v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       s.config,
		RootFS:       v1.RootFS{Type: "layers"},
	}
	for i, l := range s.layers {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, l.diffID)
		h := v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "cri-shim hack/testimages"}
		if i < len(s.history) {
			h.CreatedBy += ": " + s.history[i]
		}
		cf.History = append(cf.History, h)
	}
	cfg, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg)), Digest: sha(cfg)},
	}
	for _, l := range s.layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCILayer, Size: int64(len(l.blob)), Digest: l.digest})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &image{names: s.names, about: s.about, manifest: mb, config: cfg, layers: s.layers, digest: sha(mb)}, nil
}

// repoAndTag splits an upstream reference into the registry path a mirror
// serves it under (the host dropped) and its tag.
func repoAndTag(ref string) (repo, tag string, err error) {
	slash := strings.IndexByte(ref, '/')
	if slash < 0 || !strings.ContainsAny(ref[:slash], ".:") {
		return "", "", fmt.Errorf("reference %q has no registry host", ref)
	}
	rest := ref[slash+1:]
	colon := strings.LastIndexByte(rest, ':')
	if colon < 0 || strings.Contains(rest[colon:], "/") {
		return rest, "latest", nil
	}
	return rest[:colon], rest[colon+1:], nil
}
