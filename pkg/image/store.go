package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Options configures a Store.
type Options struct {
	// Root holds everything: content, image records, layers, rootfs dirs.
	Root string
	// RegistryConfigDir is a containerd-style certs.d directory with
	// <host>/hosts.toml files; empty means none.
	RegistryConfigDir string
	// ProgressTimeout fails a registry transfer that receives nothing for
	// this long. Zero means DefaultProgressTimeout; negative disables.
	ProgressTimeout time.Duration
	// MinThroughput fails a transfer averaging fewer bytes per second
	// over ThroughputWindow. Zero disables.
	MinThroughput int64
	// ThroughputWindow is the averaging window for MinThroughput; zero
	// means DefaultThroughputWindow.
	ThroughputWindow time.Duration
	// Pinned lists references (names or IDs) of images that Remove must
	// never delete, such as the pause image. They need not exist yet.
	Pinned []string
	// Platform selects from multi-arch indexes; zero means the host's.
	Platform v1.Platform
	// Registerer receives the pull metrics; nil registers none.
	Registerer prometheus.Registerer
	// InUse, if set, is asked by Remove whether a container uses the
	// image; it is called with the store locked and must not call back
	// into the Store.
	InUse func(imageID string) bool
}

// Defaults for Options.
const (
	DefaultProgressTimeout  = 5 * time.Minute
	DefaultThroughputWindow = 30 * time.Second
)

// Store is the image store. Its methods are safe for concurrent use.
//
// Locking: mu guards the in-memory index (images, names, layers, rootfs,
// leases). Network transfers and layer unpacking run without it; commits,
// lookups, removal, garbage collection and rootfs mount changes hold it.
// Deleting large trees happens after renaming them into trash/ under the
// lock, then without it.
type Store struct {
	root       string
	configDir  string
	content    *contentStore
	platform   v1.Platform
	wd         watchdog
	metrics    *metrics
	transports transports
	inUse      func(string) bool

	mu        sync.Mutex
	images    map[string]*imageRecord  // by ID
	names     map[string]string        // RepoTag or RepoDigest -> ID
	layers    map[string]*layerRecord  // by diff ID
	nextLayer int                      // next layer dir number
	rootfs    map[string]*rootfsRecord // by key
	leases    map[string]int           // "blob:<digest>" / "layer:<diffID>" -> holders
	pinned    map[string]bool          // normalised refs and IDs from Options.Pinned
	// layerGCOff is set while a rootfs record could not be read: its
	// layers are unknown, so no layer is deleted.
	layerGCOff bool

	pulls   flight[*Image]
	blobs   flight[struct{}]
	unpacks flight[*layerRecord]
}

func (s *Store) imagesDir() string { return filepath.Join(s.root, "images") }
func (s *Store) layersDir() string { return filepath.Join(s.root, "layers") }
func (s *Store) rootfsDir() string { return filepath.Join(s.root, "rootfs") }
func (s *Store) trashDir() string  { return filepath.Join(s.root, "trash") }

// New opens (creating if needed) the store under opts.Root and loads what is
// on disk. Unreadable records are logged and skipped; leftovers of
// interrupted work (partial blobs, half-unpacked layers, unreferenced
// content) are removed.
func New(ctx context.Context, opts Options) (*Store, error) {
	logger := klog.FromContext(ctx)
	if opts.Root == "" {
		return nil, fmt.Errorf("image store root is empty: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(opts.Root, 0o711); err != nil {
		return nil, fmt.Errorf("create image store root: %w", err)
	}
	// Mount targets and mountinfo use resolved paths.
	root, err := filepath.EvalSymlinks(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("resolve image store root: %w", err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	s := &Store{
		root:      root,
		configDir: opts.RegistryConfigDir,
		platform:  opts.Platform,
		inUse:     opts.InUse,
		images:    map[string]*imageRecord{},
		names:     map[string]string{},
		layers:    map[string]*layerRecord{},
		rootfs:    map[string]*rootfsRecord{},
		leases:    map[string]int{},
		pinned:    map[string]bool{},
		nextLayer: 1,
	}
	if s.platform.OS == "" {
		s.platform = hostPlatform()
	}
	s.wd = watchdog{timeout: opts.ProgressTimeout, minRate: opts.MinThroughput, window: opts.ThroughputWindow}
	if s.wd.timeout == 0 {
		s.wd.timeout = DefaultProgressTimeout
	}
	if s.wd.window <= 0 {
		s.wd.window = DefaultThroughputWindow
	}
	for _, p := range opts.Pinned {
		key, err := pinKey(p)
		if err != nil {
			return nil, fmt.Errorf("pinned image: %w", err)
		}
		s.pinned[key] = true
	}
	if s.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	for _, d := range []string{s.imagesDir(), s.layersDir(), s.rootfsDir(), s.trashDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := removeDirContents(s.trashDir()); err != nil {
		logger.Error(err, "Could not empty image store trash")
	}
	if s.content, err = newContentStore(filepath.Join(root, "content")); err != nil {
		return nil, err
	}
	if err := s.loadLayers(ctx); err != nil {
		return nil, err
	}
	if err := s.loadImages(ctx); err != nil {
		return nil, err
	}
	if err := s.loadRootfs(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.collectLocked(ctx)
	s.mu.Unlock()
	s.emptyTrash(ctx)
	logger.V(2).Info("Image store loaded", "root", root, "images", len(s.images), "layers", len(s.layers), "rootfs", len(s.rootfs))
	return s, nil
}

func hostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// pinKey normalises a pinned reference: a full ID or a name.
func pinKey(ref string) (string, error) {
	if id, ok := fullID(ref); ok {
		return id, nil
	}
	r, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	if r.Digest != "" {
		return r.Name() + "@" + r.Digest, nil
	}
	return r.Name() + ":" + r.Tag, nil
}

var hexRE = regexp.MustCompile(`^[a-f0-9]{1,64}$`)

// fullID accepts "sha256:<64 hex>" or the bare 64 hex characters.
func fullID(s string) (string, bool) {
	if sha256RE.MatchString(s) {
		return s, true
	}
	if hex64RE.MatchString(s) {
		return "sha256:" + s, true
	}
	return "", false
}

func (s *Store) loadImages(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	entries, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return fmt.Errorf("read image records: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(s.imagesDir(), name))
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		rec, err := s.readImageRecord(filepath.Join(s.imagesDir(), name))
		if err != nil {
			logger.Error(err, "Skipping unreadable image record", "file", name)
			continue
		}
		s.images[rec.ID] = rec
	}
	// Names claimed twice (a crash while a tag moved): the newer record
	// keeps the name.
	for _, id := range slices.Sorted(maps.Keys(s.images)) {
		rec := s.images[id]
		for _, n := range rec.names() {
			other, ok := s.names[n]
			if !ok {
				s.names[n] = id
				continue
			}
			orec := s.images[other]
			loser := rec
			if rec.Updated.After(orec.Updated) {
				loser = orec
				s.names[n] = id
			}
			loser.RepoTags = removeString(loser.RepoTags, n)
			loser.RepoDigests = removeString(loser.RepoDigests, n)
			if err := s.writeImageRecord(loser); err != nil {
				logger.Error(err, "Could not rewrite image record", "imageID", loser.ID)
			}
		}
	}
	return nil
}

func (s *Store) readImageRecord(path string) (*imageRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec imageRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if rec.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", rec.Version, recordVersion)
	}
	if want := "sha256:" + strings.TrimSuffix(filepath.Base(path), ".json"); rec.ID != want {
		return nil, fmt.Errorf("record of %s stored as %s", rec.ID, want)
	}
	if len(rec.Layers) != len(rec.DiffIDs) {
		return nil, fmt.Errorf("%d layers but %d diff IDs", len(rec.Layers), len(rec.DiffIDs))
	}
	for _, d := range rec.DiffIDs {
		if _, ok := s.layers[d]; !ok {
			return nil, fmt.Errorf("layer %s is missing", d)
		}
	}
	for _, b := range rec.allBlobs() {
		if err := validDigest(b); err != nil {
			return nil, err
		}
	}
	return &rec, nil
}

func (s *Store) imageRecordPath(id string) string {
	return filepath.Join(s.imagesDir(), strings.TrimPrefix(id, "sha256:")+".json")
}

func (s *Store) writeImageRecord(rec *imageRecord) error {
	rec.Version = recordVersion
	return writeJSONAtomic(s.imageRecordPath(rec.ID), rec)
}

// Get finds an image by full ID, name (tag or digest reference, normalised:
// "busybox" finds docker.io/library/busybox:latest) or unambiguous ID
// prefix. It returns an errdefs.ErrNotFound-wrapped error when absent and
// errdefs.ErrInvalidArgument for a malformed reference.
func (s *Store) Get(ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	return s.exportLocked(rec), nil
}

// List returns every image, sorted by ID.
func (s *Store) List() []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Image, 0, len(s.images))
	for _, id := range slices.Sorted(maps.Keys(s.images)) {
		out = append(out, s.exportLocked(s.images[id]))
	}
	return out
}

func (s *Store) resolveLocked(ref string) (*imageRecord, error) {
	if ref == "" {
		return nil, fmt.Errorf("empty image reference: %w", errdefs.ErrInvalidArgument)
	}
	if id, ok := fullID(ref); ok {
		if rec := s.images[id]; rec != nil {
			return rec, nil
		}
		return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	r, perr := ParseRef(ref)
	if perr == nil {
		key := r.Name() + ":" + r.Tag
		if r.Digest != "" {
			key = r.Name() + "@" + r.Digest
		}
		if id, ok := s.names[key]; ok {
			return s.images[id], nil
		}
	}
	// An ID prefix, as docker and crictl accept ("sha256:" optional).
	if prefix := strings.TrimPrefix(ref, "sha256:"); hexRE.MatchString(prefix) {
		var found *imageRecord
		for id, rec := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), prefix) {
				if found != nil {
					return nil, fmt.Errorf("image ID prefix %q is ambiguous: %w", ref, errdefs.ErrInvalidArgument)
				}
				found = rec
			}
		}
		if found != nil {
			return found, nil
		}
	}
	if perr != nil {
		return nil, perr
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (s *Store) exportLocked(rec *imageRecord) *Image {
	img := rec.Image.clone()
	img.Pinned = s.isPinnedLocked(rec)
	return img
}

func (s *Store) isPinnedLocked(rec *imageRecord) bool {
	if rec.Pinned || s.pinned[rec.ID] {
		return true
	}
	for _, n := range rec.names() {
		if s.pinned[n] {
			return true
		}
	}
	return false
}

// Pin marks an existing image as never to be removed, persistently.
func (s *Store) Pin(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	if rec.Pinned {
		return nil
	}
	upd := *rec
	upd.Pinned = true
	if err := s.writeImageRecord(&upd); err != nil {
		return fmt.Errorf("pin image %s: %w", rec.ID, err)
	}
	s.images[rec.ID] = &upd
	return nil
}

// Remove deletes the image ref resolves to, with all its names (CRI
// RemoveImage removes the image, not one tag), and then its blobs and layers
// that nothing else uses. Layers of a prepared rootfs stay until
// RemoveRootfs. Removing an absent image is not an error. A pinned image, or
// one Options.InUse reports in use, is refused with an
// errdefs.ErrFailedPrecondition-wrapped error.
func (s *Store) Remove(ctx context.Context, ref string) error {
	logger := klog.FromContext(ctx)
	s.mu.Lock()
	rec, err := s.resolveLocked(ref)
	if errdefs.IsNotFound(err) {
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if s.isPinnedLocked(rec) {
		s.mu.Unlock()
		return fmt.Errorf("image %s is pinned: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	if s.inUse != nil && s.inUse(rec.ID) {
		s.mu.Unlock()
		return fmt.Errorf("image %s is in use by a container: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	if err := os.Remove(s.imageRecordPath(rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.mu.Unlock()
		return fmt.Errorf("remove image record %s: %w", rec.ID, err)
	}
	delete(s.images, rec.ID)
	for _, n := range rec.names() {
		if s.names[n] == rec.ID {
			delete(s.names, n)
		}
	}
	s.collectLocked(ctx)
	s.mu.Unlock()
	s.emptyTrash(ctx)
	logger.V(2).Info("Removed image", "imageID", rec.ID, "repoTags", rec.RepoTags)
	return nil
}

// commit records an image under its names, merging with a record of the
// same ID and taking the names away from any other image that had them.
// The caller holds leases on every blob and layer of rec.
func (s *Store) commit(ctx context.Context, rec *imageRecord, names []string) (*Image, error) {
	logger := klog.FromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	upd := *rec
	if old := s.images[rec.ID]; old != nil {
		upd = *old
		upd.RepoTags = slices.Clone(old.RepoTags)
		upd.RepoDigests = slices.Clone(old.RepoDigests)
		upd.Blobs = slices.Clone(old.Blobs)
		for _, b := range rec.Blobs {
			upd.Blobs = addUnique(upd.Blobs, b)
		}
		if upd.ManifestDigest == "" {
			upd.ManifestDigest = rec.ManifestDigest
		}
	}
	moved := map[string]*imageRecord{} // images losing names, updated copies
	for _, n := range names {
		if strings.Contains(n, "@") {
			upd.RepoDigests = addUnique(upd.RepoDigests, n)
		} else {
			upd.RepoTags = addUnique(upd.RepoTags, n)
		}
		other, ok := s.names[n]
		if !ok || other == rec.ID {
			continue
		}
		o := moved[other]
		if o == nil {
			c := *s.images[other]
			c.RepoTags, c.RepoDigests = slices.Clone(c.RepoTags), slices.Clone(c.RepoDigests)
			o = &c
			moved[other] = o
		}
		o.RepoTags = removeString(o.RepoTags, n)
		o.RepoDigests = removeString(o.RepoDigests, n)
		o.Updated = time.Now()
	}
	upd.Updated = time.Now()
	if err := s.writeImageRecord(&upd); err != nil {
		return nil, fmt.Errorf("write image record: %w", err)
	}
	s.images[upd.ID] = &upd
	for _, n := range names {
		s.names[n] = upd.ID
	}
	for _, o := range moved {
		// Memory is right either way; on disk the newer record wins a
		// name at the next load, so a failure here only costs a log line.
		if err := s.writeImageRecord(o); err != nil {
			logger.Error(err, "Could not update image record after moving a tag", "imageID", o.ID)
		}
		s.images[o.ID] = o
		logger.V(2).Info("Moved image name", "from", o.ID, "to", upd.ID)
	}
	return s.exportLocked(&upd), nil
}
