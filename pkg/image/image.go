package image

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Image is what the store knows about one image, identified by its config
// digest. Values returned by the Store are copies.
type Image struct {
	// ID is "sha256:<config digest hex>", what CRI calls the image ID.
	ID string `json:"id"`
	// RepoTags are normalised upstream names with tags
	// (docker.io/library/busybox:latest), whatever mirror served them.
	RepoTags []string `json:"repoTags,omitempty"`
	// RepoDigests are name@digest, the digest being the one the name
	// resolved to (an index digest for multi-arch images).
	RepoDigests []string `json:"repoDigests,omitempty"`
	// Size is the sum of the compressed layers and the config, as
	// containerd reports it.
	Size int64 `json:"size"`
	// ManifestDigest is the platform manifest the image came from; empty
	// for docker-archive imports, which have none.
	ManifestDigest string      `json:"manifestDigest,omitempty"`
	Config         ImageConfig `json:"config"`
	// DiffIDs are the uncompressed layer digests, base layer first.
	DiffIDs []string `json:"diffIDs"`
	// Pinned images are never removed (the pause image): pinned by
	// Options.Pinned or Pin.
	Pinned bool `json:"pinned,omitempty"`
}

// ImageConfig is the part of the OCI image config a runtime uses.
type ImageConfig struct {
	User         string              `json:"user,omitempty"`
	Env          []string            `json:"env,omitempty"`
	Entrypoint   []string            `json:"entrypoint,omitempty"`
	Cmd          []string            `json:"cmd,omitempty"`
	WorkingDir   string              `json:"workingDir,omitempty"`
	StopSignal   string              `json:"stopSignal,omitempty"`
	Volumes      map[string]struct{} `json:"volumes,omitempty"`
	Labels       map[string]string   `json:"labels,omitempty"`
	ExposedPorts map[string]struct{} `json:"exposedPorts,omitempty"`
}

// User splits the image's User the way CRI ImageStatus reports it: see
// ParseUser.
func (img *Image) User() (uid *int64, username string) { return ParseUser(img.Config.User) }

// ParseUser splits an image User ("1000", "1000:50", "www-data",
// "www-data:50") into what CRI's Image message carries: uid when the part
// before ':' is numeric, else username. The group is not reported (CRI has
// no field for it).
func ParseUser(user string) (uid *int64, username string) {
	name, _, _ := strings.Cut(user, ":")
	if name == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(name, 10, 64); err == nil && n >= 0 {
		return &n, ""
	}
	return nil, name
}

func (img *Image) clone() *Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.DiffIDs = slices.Clone(img.DiffIDs)
	c.Config.Env = slices.Clone(img.Config.Env)
	c.Config.Entrypoint = slices.Clone(img.Config.Entrypoint)
	c.Config.Cmd = slices.Clone(img.Config.Cmd)
	c.Config.Volumes = cloneMap(img.Config.Volumes)
	c.Config.Labels = cloneMap(img.Config.Labels)
	c.Config.ExposedPorts = cloneMap(img.Config.ExposedPorts)
	return &c
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// recordVersion is bumped when imageRecord changes incompatibly; a record
// of another version is skipped at load (and the image pulled again).
const recordVersion = 1

// imageRecord is the on-disk form of an image: <root>/images/<hex>.json.
type imageRecord struct {
	Version int `json:"version"`
	Image
	// Layers are the layer blobs, aligned with DiffIDs.
	Layers []layerBlob `json:"layers"`
	// Blobs are the other blobs the image keeps: config, manifest, index.
	Blobs []string `json:"blobs"`
	// Updated orders records that claim the same name after a crash in
	// the middle of moving a tag: the newer one wins.
	Updated time.Time `json:"updated"`
}

type layerBlob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
}

// names is every name the image answers to in lookups.
func (r *imageRecord) names() []string {
	return append(slices.Clone(r.RepoTags), r.RepoDigests...)
}

// blobs is every blob the image references.
func (r *imageRecord) allBlobs() []string {
	out := slices.Clone(r.Blobs)
	for _, l := range r.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func addUnique(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	list = append(list, s)
	slices.Sort(list)
	return list
}

func removeString(list []string, s string) []string {
	return slices.DeleteFunc(list, func(e string) bool { return e == s })
}
