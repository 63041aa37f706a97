package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// Container root filesystems.
//
// A rootfs is <root>/rootfs/<key>/ with
//
//	rootfs.json  the image ID and the layer diff IDs (base first)
//	upper/       the container's writable layer
//	work/        overlayfs's work dir
//	merged/      the overlay mount: lowerdir = the image's layer dirs, top
//	             layer first; the runtime's bundle root
//
// The record is written before the mount, so the layers of every prepared
// rootfs are known after a restart and are kept by garbage collection until
// RemoveRootfs, even if the image is removed meanwhile. In memory the rootfs
// is registered before the record is written (see Store's locking). After a reboot the
// dirs are still there and the mount is not: PrepareRootfs mounts again,
// keeping upper.
type rootfsRecord struct {
	Version int      `json:"version"`
	Key     string   `json:"key"`
	ImageID string   `json:"imageID"`
	DiffIDs []string `json:"diffIDs"`
}

var keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func validKey(key string) error {
	if !keyRE.MatchString(key) {
		return fmt.Errorf("rootfs key %q: want 1-128 of [A-Za-z0-9_.-], not starting with '.', '_' or '-': %w", key, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) rootfsPaths(key string) (dir, upper, work, merged string) {
	dir = filepath.Join(s.rootfsDir(), key)
	return dir, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
}

func (s *Store) loadRootfs(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	entries, err := os.ReadDir(s.rootfsDir())
	if err != nil {
		return fmt.Errorf("read rootfs dir: %w", err)
	}
	for _, e := range entries {
		key := e.Name()
		if !e.IsDir() || validKey(key) != nil {
			continue
		}
		dir, _, _, _ := s.rootfsPaths(key)
		if tmps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(tmps) > 0 {
			for _, t := range tmps {
				os.Remove(t)
			}
		}
		rec, err := readRootfsRecord(filepath.Join(dir, "rootfs.json"))
		if err == nil && rec.Key != key {
			err = fmt.Errorf("record of %q stored under %q", rec.Key, key)
		}
		if err != nil {
			// Its layers are unknown: keep every layer until it is removed.
			logger.Error(err, "Unreadable rootfs record; layer garbage collection is off until it is removed", "key", key)
			s.layerGCOff = true
			continue
		}
		for _, d := range rec.DiffIDs {
			if s.layers[d] == nil {
				logger.Error(errors.New("layer missing"), "Rootfs cannot be mounted again", "key", key, "diffID", d)
			}
		}
		s.rootfs[key] = rec
	}
	return nil
}

func readRootfsRecord(path string) (*rootfsRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec rootfsRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, err
	}
	if rec.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", rec.Version, recordVersion)
	}
	return &rec, nil
}

// PrepareRootfs creates the container rootfs key for the image (ID or any
// reference Get accepts) and returns the path of its mounted overlay. It is
// idempotent: an existing rootfs of the same image is mounted if needed
// (after a reboot) and its path returned; one of another image is an
// errdefs.ErrAlreadyExists error.
func (s *Store) PrepareRootfs(ctx context.Context, imageID, key string) (string, error) {
	return s.prepareRootfs(ctx, imageID, key, nil)
}

func (s *Store) prepareRootfs(ctx context.Context, imageID, key string, idmap *IDMap) (_ string, retErr error) {
	logger := klog.FromContext(ctx)
	if err := validKey(key); err != nil {
		return "", err
	}
	defer s.rootfsLocks.Lock(key)()
	dir, upper, work, merged := s.rootfsPaths(key)
	s.mu.Lock()
	rec, created, err := s.claimRootfsLocked(imageID, key)
	// The layer dirs are looked up now, while the index is at hand; the
	// claim keeps them from collection until RemoveRootfs.
	lowers, missing := s.lowerDirsLocked(rec)
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	if created {
		// The dir is not ours until Mkdir succeeds: an existing one is left
		// alone.
		if _, err := os.Lstat(dir); err == nil {
			s.unclaimRootfs(ctx, rec)
			return "", fmt.Errorf("rootfs dir %s exists without a readable record; remove it with RemoveRootfs: %w", dir, errdefs.ErrAlreadyExists)
		}
		if err := os.Mkdir(dir, 0o711); err != nil {
			s.unclaimRootfs(ctx, rec)
			return "", fmt.Errorf("create rootfs dir: %w", err)
		}
		defer func() {
			if retErr != nil {
				s.abandonRootfs(ctx, rec, dir, merged)
			}
		}()
		// On disk before the mount: after a crash, the layers under the
		// rootfs are known and kept.
		if err := writeJSONAtomic(filepath.Join(dir, "rootfs.json"), rec); err != nil {
			return "", err
		}
	}
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create rootfs dir: %w", err)
		}
	}
	mounted, err := isMounted(merged)
	if err != nil {
		return "", err
	}
	if !mounted {
		if missing != "" {
			return "", fmt.Errorf("rootfs %q: layer %s is missing: %w", key, missing, errdefs.ErrDataLoss)
		}
		if len(lowers) == 0 {
			// An image without layers (scratch): overlay needs a lower dir.
			empty := filepath.Join(dir, "empty")
			if err := os.Mkdir(empty, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", err
			}
			lowers = append(lowers, empty)
		}
		if idmap != nil {
			// The upper dir's root is the rootfs's root: the container's
			// root must own it to create files in /.
			if err := os.Chown(upper, int(idmap.UID), int(idmap.GID)); err != nil {
				return "", fmt.Errorf("rootfs %q: give the writable layer to the container's root: %w", key, err)
			}
			mapped, done, err := idmapLayers(lowers, filepath.Join(dir, "idmap"), idmap.UserNS)
			if err != nil {
				return "", fmt.Errorf("rootfs %q: %w", key, err)
			}
			defer done()
			lowers = mapped
		}
		s.hook("mount")
		if err := mountOverlay(lowers, upper, work, merged); err != nil {
			return "", fmt.Errorf("mount rootfs %q: %w", key, err)
		}
		logger.V(2).Info("Mounted container rootfs", "key", key, "imageID", rec.ImageID, "path", merged, "layers", len(lowers))
	}
	return merged, nil
}

// claimRootfsLocked finds the record of rootfs key, or makes one for the
// image and registers it in the index (created): from then on, collections
// keep its layers, whatever happens to the image.
func (s *Store) claimRootfsLocked(imageID, key string) (rec *rootfsRecord, created bool, err error) {
	if rec = s.rootfs[key]; rec != nil {
		if id, ok := fullID(imageID); ok && id == rec.ImageID {
			return rec, false, nil
		}
		img, err := s.resolveLocked(imageID)
		if err != nil {
			return nil, false, err
		}
		if img.ID != rec.ImageID {
			return nil, false, fmt.Errorf("rootfs %q exists for image %s, not %s: %w", key, rec.ImageID, img.ID, errdefs.ErrAlreadyExists)
		}
		return rec, false, nil
	}
	img, err := s.resolveLocked(imageID)
	if err != nil {
		return nil, false, err
	}
	rec = &rootfsRecord{Version: recordVersion, Key: key, ImageID: img.ID, DiffIDs: slices.Clone(img.DiffIDs)}
	s.rootfs[key] = rec
	return rec, true, nil
}

// lowerDirsLocked returns the overlay lower dirs of rec, top layer first, or
// the diff ID of a layer that is missing.
func (s *Store) lowerDirsLocked(rec *rootfsRecord) (lowers []string, missing string) {
	if rec == nil {
		return nil, ""
	}
	lowers = make([]string, 0, len(rec.DiffIDs))
	for i := len(rec.DiffIDs) - 1; i >= 0; i-- {
		l := s.layers[rec.DiffIDs[i]]
		if l == nil {
			return nil, rec.DiffIDs[i]
		}
		lowers = append(lowers, s.layerPath(l.ID))
	}
	return lowers, ""
}

// abandonRootfs undoes a PrepareRootfs that created rec and its dir, and
// failed. A rootfs that cannot be unmounted stays registered (its layers are
// in use) for RemoveRootfs to finish.
func (s *Store) abandonRootfs(ctx context.Context, rec *rootfsRecord, dir, merged string) {
	if err := unmountAll(merged); err != nil {
		klog.FromContext(ctx).Error(err, "Could not unmount failed rootfs", "key", rec.Key)
		return
	}
	os.RemoveAll(dir)
	s.unclaimRootfs(ctx, rec)
}

// unclaimRootfs drops the registration claimRootfsLocked made.
func (s *Store) unclaimRootfs(ctx context.Context, rec *rootfsRecord) {
	s.mu.Lock()
	if s.rootfs[rec.Key] == rec {
		delete(s.rootfs, rec.Key)
	}
	_, imageKept := s.images[rec.ImageID]
	s.mu.Unlock()
	if !imageKept {
		// The image went while we held its layers: they are garbage now.
		s.collect(ctx)
	}
}

// UnmountRootfs unmounts the rootfs key, keeping its dirs. Unmounting one
// that is not mounted, or absent, is not an error.
func (s *Store) UnmountRootfs(key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	defer s.rootfsLocks.Lock(key)()
	_, _, _, merged := s.rootfsPaths(key)
	s.hook("unmount")
	return unmountAll(merged)
}

// RemoveRootfs unmounts and deletes the rootfs key, then removes layers that
// no image or rootfs uses any more. Removing an absent rootfs is not an
// error.
func (s *Store) RemoveRootfs(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	unlock := s.rootfsLocks.Lock(key)
	dir, _, _, merged := s.rootfsPaths(key)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		s.mu.Lock()
		delete(s.rootfs, key)
		s.mu.Unlock()
		unlock()
		return nil
	}
	s.hook("unmount")
	if err := unmountAll(merged); err != nil {
		unlock()
		return fmt.Errorf("remove rootfs %q: %w", key, err)
	}
	// Out of rootfs/ first, out of the index after: a collection in
	// between still keeps the layers, which nothing mounts any more.
	s.trashPath(ctx, dir)
	// The key lock keeps the key's entry as it is until we delete it.
	known := s.knownRootfs(key)
	unreadableLeft := !known && s.anyUnreadableRootfs()
	s.mu.Lock()
	if !known && s.layerGCOff {
		s.layerGCOff = unreadableLeft
	}
	delete(s.rootfs, key)
	s.mu.Unlock()
	unlock()
	s.collect(ctx)
	klog.FromContext(ctx).V(2).Info("Removed container rootfs", "key", key)
	return nil
}

func (s *Store) knownRootfs(key string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rootfs[key] != nil
}

// anyUnreadableRootfs reports whether a rootfs dir without a loaded record
// remains. The dir is read before the index: a rootfs being created is in
// the index before its dir exists, and a dir whose record failed to load is
// never in the index, so a race can only make the answer "yes" wrongly,
// which keeps layer collection off a little longer.
func (s *Store) anyUnreadableRootfs() bool {
	entries, err := os.ReadDir(s.rootfsDir())
	if err != nil {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range entries {
		if e.IsDir() && validKey(e.Name()) == nil && s.rootfs[e.Name()] == nil {
			return true
		}
	}
	return false
}

// RootfsUsage reports the disk usage of the rootfs's writable layer (its
// upper dir): bytes allocated and inodes.
// RootfsUpper is the writable (upper) directory of a container's rootfs:
// what the container changed, whiteouts included (a checkpoint archives it).
func (s *Store) RootfsUpper(key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	_, upper, _, _ := s.rootfsPaths(key)
	if _, err := os.Lstat(upper); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("rootfs %q: %w", key, errdefs.ErrNotFound)
	}
	return upper, nil
}

func (s *Store) RootfsUsage(key string) (bytes, inodes uint64, err error) {
	if err := validKey(key); err != nil {
		return 0, 0, err
	}
	_, upper, _, _ := s.rootfsPaths(key)
	if _, err := os.Lstat(upper); errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("rootfs %q: %w", key, errdefs.ErrNotFound)
	}
	return diskUsage(upper)
}
