package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// Garbage collection. After an image is removed (and at start-up, and after
// a rootfs is removed) every blob and layer that nothing references is
// deleted. References are:
//   - image records: their blobs and layers;
//   - rootfs records: the layers under a prepared container rootfs, mounted
//     or not, so a layer never vanishes under a container: it goes only with
//     the last image and the last rootfs that use it (RemoveRootfs collects);
//   - leases: blobs and layers of pulls and imports in flight.
//
// A collection takes its snapshot of the references, and drops the unused
// layers from the index, in one short mu section; the deletions run after
// it, under gcMu only, so lookups never wait for them (see Store).

// collect deletes what nothing references, then empties the trash. Call it
// with no lock held.
func (s *Store) collect(ctx context.Context) {
	s.gcMu.Lock()
	s.collectUnderGC(ctx)
	s.gcMu.Unlock()
	s.emptyTrash(ctx)
}

func (s *Store) collectUnderGC(ctx context.Context) {
	logger := klog.FromContext(ctx)
	usedBlobs := map[string]bool{}
	var unused []*layerRecord
	s.mu.Lock()
	usedLayers := map[string]bool{}
	for _, rec := range s.images {
		for _, b := range rec.allBlobs() {
			usedBlobs[b] = true
		}
		for _, d := range rec.DiffIDs {
			usedLayers[d] = true
		}
	}
	for _, rf := range s.rootfs {
		for _, d := range rf.DiffIDs {
			usedLayers[d] = true
		}
	}
	for k := range s.leases {
		if d, ok := strings.CutPrefix(k, "blob:"); ok {
			usedBlobs[d] = true
		} else if d, ok := strings.CutPrefix(k, "layer:"); ok {
			usedLayers[d] = true
		}
	}
	if !s.layerGCOff {
		for diffID, rec := range s.layers {
			if !usedLayers[diffID] {
				// Out of the index now, in the section that found it
				// unused: whoever needs it from here on unpacks it again
				// (under a new number), nobody mounts this copy.
				delete(s.layers, diffID)
				unused = append(unused, rec)
			}
		}
	}
	s.mu.Unlock()

	s.hook("gc")
	for _, rec := range unused {
		// Record first: a dir without a record is garbage at the next
		// load, a record without its dir would be a broken layer.
		if err := os.Remove(s.layerPath(rec.ID) + ".json"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Error(err, "Could not remove layer record", "diffID", rec.DiffID)
			// Keep it known, as it still is on disk; the next collection
			// tries again.
			s.mu.Lock()
			if s.layers[rec.DiffID] == nil {
				s.layers[rec.DiffID] = rec
			}
			s.mu.Unlock()
			continue
		}
		s.trashPath(ctx, s.layerPath(rec.ID))
		logger.V(3).Info("Removed unused layer", "diffID", rec.DiffID, "dir", s.layerPath(rec.ID))
	}
	blobs, err := s.content.list()
	if err != nil {
		logger.Error(err, "Could not list blobs for garbage collection")
		return
	}
	for _, b := range blobs {
		// A blob stored after the snapshot was leased first, and the
		// lease waited for gcMu: it is either in usedBlobs or not yet
		// leased, and then not yet stored either.
		if usedBlobs[b] {
			continue
		}
		if err := s.content.delete(b); err != nil {
			logger.Error(err, "Could not remove unused blob", "digest", b)
			continue
		}
		logger.V(3).Info("Removed unused blob", "digest", b)
	}
}

// trashPath moves path into trash/ (a rename: cheap, and atomic for whoever
// looks at path); emptyTrash deletes it later.
func (s *Store) trashPath(ctx context.Context, path string) {
	dst, err := os.MkdirTemp(s.trashDir(), "t-")
	if err == nil {
		err = os.Rename(path, filepath.Join(dst, "x"))
	}
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return
	}
	klog.FromContext(ctx).Error(err, "Could not move to trash, removing in place", "path", path)
	if err := os.RemoveAll(path); err != nil {
		klog.FromContext(ctx).Error(err, "Could not remove", "path", path)
	}
}

// emptyTrash deletes everything in trash/. Call it without the lock.
func (s *Store) emptyTrash(ctx context.Context) {
	if err := removeDirContents(s.trashDir()); err != nil {
		klog.FromContext(ctx).Error(fmt.Errorf("empty trash: %w", err), "Could not delete removed layers or rootfs dirs")
	}
}

// lease keeps blobs and layers from garbage collection while a pull or an
// import that uses them is in flight.
type lease struct {
	s    *Store
	mu   sync.Mutex
	keys []string
}

func (s *Store) newLease() *lease { return &lease{s: s} }

// add leases key; call it before checking whether the object exists, so
// that a concurrent collection cannot delete it in between. It waits for a
// collection in progress (gcMu), whose snapshot does not have the lease.
func (l *lease) add(key string) {
	l.s.gcMu.RLock()
	l.s.mu.Lock()
	l.s.leases[key]++
	l.s.mu.Unlock()
	l.s.gcMu.RUnlock()
	l.mu.Lock()
	l.keys = append(l.keys, key)
	l.mu.Unlock()
}

func (l *lease) release() {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.keys {
		if l.s.leases[k]--; l.s.leases[k] <= 0 {
			delete(l.s.leases, k)
		}
	}
	l.keys = nil
}
