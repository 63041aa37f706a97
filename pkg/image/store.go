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

	"github.com/cri-shim/cri-shim/pkg/keylock"
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
	// image. It is called with the image-record lock held (not the index
	// lock): it may call Get and List, but not Remove, Pin, Pull or Import.
	InUse func(imageID string) bool
}

// Defaults for Options.
const (
	DefaultProgressTimeout  = 5 * time.Minute
	DefaultThroughputWindow = 30 * time.Second
)

// Store is the image store. Its methods are safe for concurrent use.
//
// # Locking
//
// mu guards the in-memory index (images, names, layers, rootfs, leases,
// nextLayer, layerGCOff) and is held for map operations only: never across
// file I/O, an fsync, a mount or unmount, a registry request or a garbage
// collection. The reads CRI makes all the time (Get, List, FsUsage: its
// ImageStatus, ListImages and ImageFsInfo) take nothing else, so they never
// wait for a CreateContainer's mount or a RemoveImage's collection. Records
// in the maps are never modified in place: a writer installs a new copy.
//
// The slow mutations are serialised by locks of their own, taken before mu:
//
//   - rootfsLocks: one per rootfs key, held by PrepareRootfs, UnmountRootfs
//     and RemoveRootfs across their mkdirs, record fsync, mount and unmount,
//     so that two operations on one container's rootfs never interleave.
//   - recMu: held by the writers of image records (commit, Pin, Remove)
//     from reading the index to installing the result, across the record
//     fsync, so that memory and disk change together and a Remove cannot
//     interleave with a commit of the same image or name.
//   - gcMu: a collection holds it exclusively from its snapshot of what is
//     used to its last deletion; lease.add holds it shared, so that a blob
//     leased (and then found present) cannot be deleted by a collection that
//     took its snapshot before the lease. Layers need no such care: a
//     collection drops an unused layer from the index in the same mu section
//     that found it unused, and every user looks layers up in the index.
//
// Lock order: rootfsLocks[key] -> recMu -> gcMu -> mu. A goroutine may take
// a lock only if it holds none to its right (and takes at most one rootfs
// key). Invariants that span the locks:
//
//   - PrepareRootfs registers the rootfs (and so its layers) in the index
//     in the same mu section that resolves the image, before any disk work,
//     so a collection that runs during the mount keeps its layers, even if
//     the image is removed meanwhile; the record reaches disk before the
//     mount, so after a crash the layers are still known.
//   - Remove asks InUse and refuses pinned images under recMu, then removes
//     the record from disk before the index entry, so that a removal that
//     fails leaves both; commit and Pin write the record before installing
//     it, so the index never shows what a restart would not find.
//   - Trees are deleted by renaming them into trash/, then emptying trash/
//     with no lock held.
type Store struct {
	root       string
	configDir  string
	content    *contentStore
	platform   v1.Platform
	wd         watchdog
	metrics    *metrics
	transports transports
	inUse      func(string) bool
	limits     limits

	rootfsLocks keylock.Map
	recMu       sync.Mutex
	gcMu        sync.RWMutex

	mu        sync.RWMutex
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
	// syncs makes unpacked layers durable, coalescing the syncfs calls
	// of layers that finish together.
	syncs syncGroup

	// testHook, if set, is called where slow work is about to start with
	// the locks of that work held: "mount" (PrepareRootfs), "unmount"
	// (UnmountRootfs, RemoveRootfs), "record" (an image record fsync), "gc"
	// (a collection, between its snapshot and its deletions). Tests block
	// in it to show that reads do not wait. "unpack" (a layer unpack, no
	// lock held) lets tests count unpacks; it may be called concurrently.
	testHook func(point string)
}

// hook calls testHook.
func (s *Store) hook(point string) {
	if s.testHook != nil {
		s.testHook(point)
	}
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
		limits:    defaultLimits(),
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
	s.collect(ctx)
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	return s.exportLocked(rec), nil
}

// List returns every image, sorted by ID.
func (s *Store) List() []*Image {
	s.mu.RLock()
	defer s.mu.RUnlock()
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
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.RLock()
	rec, err := s.resolveLocked(ref)
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	if rec.Pinned {
		return nil
	}
	upd := *rec
	upd.Pinned = true
	s.hook("record")
	if err := s.writeImageRecord(&upd); err != nil {
		return fmt.Errorf("pin image %s: %w", rec.ID, err)
	}
	s.mu.Lock()
	s.images[rec.ID] = &upd
	s.mu.Unlock()
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
	rec, err := s.removeRecord(ref)
	if err != nil || rec == nil {
		return err
	}
	s.collect(ctx)
	logger.V(2).Info("Removed image", "imageID", rec.ID, "repoTags", rec.RepoTags)
	return nil
}

// removeRecord removes the image record and index entry of ref, everything
// Remove does but the collection; rec is nil when there was no such image.
func (s *Store) removeRecord(ref string) (*imageRecord, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.RLock()
	rec, err := s.resolveLocked(ref)
	pinned := err == nil && s.isPinnedLocked(rec)
	s.mu.RUnlock()
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if pinned {
		return nil, fmt.Errorf("image %s is pinned: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	// recMu keeps rec current until it is gone; a container created from
	// it meanwhile keeps its layers through its rootfs record.
	if s.inUse != nil && s.inUse(rec.ID) {
		return nil, fmt.Errorf("image %s is in use by a container: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	if err := os.Remove(s.imageRecordPath(rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove image record %s: %w", rec.ID, err)
	}
	s.mu.Lock()
	delete(s.images, rec.ID)
	for _, n := range rec.names() {
		if s.names[n] == rec.ID {
			delete(s.names, n)
		}
	}
	s.mu.Unlock()
	return rec, nil
}

// commit records an image under its names, merging with a record of the
// same ID and taking the names away from any other image that had them.
// The caller holds leases on every blob and layer of rec.
func (s *Store) commit(ctx context.Context, rec *imageRecord, names []string) (*Image, error) {
	logger := klog.FromContext(ctx)
	// recMu: nobody else changes images or names until ours are installed,
	// so what is read here under mu stays true across the record writes.
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.RLock()
	upd, moved := s.commitPlanLocked(rec, names)
	s.mu.RUnlock()
	s.hook("record")
	if err := s.writeImageRecord(upd); err != nil {
		return nil, fmt.Errorf("write image record: %w", err)
	}
	for _, o := range moved {
		// Memory is right either way; on disk the newer record wins a
		// name at the next load, so a failure here only costs a log line.
		if err := s.writeImageRecord(o); err != nil {
			logger.Error(err, "Could not update image record after moving a tag", "imageID", o.ID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images[upd.ID] = upd
	for _, n := range names {
		s.names[n] = upd.ID
	}
	for _, o := range moved {
		s.images[o.ID] = o
		logger.V(2).Info("Moved image name", "from", o.ID, "to", upd.ID)
	}
	return s.exportLocked(upd), nil
}

// commitPlanLocked computes what commit installs: rec merged with the record
// of the same ID, and updated copies of the images that lose a name to it.
func (s *Store) commitPlanLocked(rec *imageRecord, names []string) (*imageRecord, map[string]*imageRecord) {
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
	return &upd, moved
}
