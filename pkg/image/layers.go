package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Layers are unpacked once per diff ID into <root>/layers/<n>, n a small
// number: short paths keep an overlay mount of many layers within the
// mount-option size limit when the fsconfig API is not available. The
// record <root>/layers/<n>.json maps the number to the diff ID; a layer
// exists only once its record does. A layer is unpacked into
// <root>/layers/.tmp-*, synced, renamed to <n>, then recorded, so a crash
// never leaves a half layer that looks complete: at load, dirs without a
// record and records without a dir are dropped.
type layerRecord struct {
	Version int    `json:"version"`
	DiffID  string `json:"diffID"`
	ID      int    `json:"id"`
	// Bytes and Inodes are the unpacked layer's disk usage, counted once
	// so that FsUsage does not walk every layer.
	Bytes  uint64 `json:"bytes"`
	Inodes uint64 `json:"inodes"`
}

func (s *Store) layerPath(id int) string { return filepath.Join(s.layersDir(), strconv.Itoa(id)) }

func (s *Store) loadLayers(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return fmt.Errorf("read layers: %w", err)
	}
	dirs := map[int]bool{}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, ".tmp-"):
			s.trashPath(ctx, filepath.Join(s.layersDir(), name))
		case e.IsDir():
			n, err := strconv.Atoi(name)
			if err != nil {
				continue
			}
			dirs[n] = true
			s.nextLayer = max(s.nextLayer, n+1)
		}
	}
	for _, e := range entries {
		name := e.Name()
		base, ok := strings.CutSuffix(name, ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(s.layersDir(), name)
		rec, err := readLayerRecord(path)
		if err == nil && strconv.Itoa(rec.ID) != base {
			err = fmt.Errorf("record of layer %d stored as %s", rec.ID, name)
		}
		if err == nil && !dirs[rec.ID] {
			err = errors.New("layer dir is missing")
		}
		if err == nil && s.layers[rec.DiffID] != nil {
			err = fmt.Errorf("second copy of layer %s", rec.DiffID)
		}
		if err != nil {
			logger.Error(err, "Dropping layer record", "file", name)
			os.Remove(path)
			continue
		}
		s.layers[rec.DiffID] = rec
		s.nextLayer = max(s.nextLayer, rec.ID+1)
		delete(dirs, rec.ID)
	}
	for n := range dirs {
		logger.Info("Removing layer dir without a record", "dir", s.layerPath(n))
		s.trashPath(ctx, s.layerPath(n))
	}
	return nil
}

func readLayerRecord(path string) (*layerRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec layerRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, err
	}
	if rec.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", rec.Version, recordVersion)
	}
	if validDigest(rec.DiffID) != nil || rec.ID <= 0 {
		return nil, fmt.Errorf("bad layer record %+v", rec)
	}
	return &rec, nil
}

// layerJob is one layer of an image being fetched: its blob, the diff ID
// the image config gives it, where the blob comes from, and the unpack
// slots of the pull or import it belongs to.
type layerJob struct {
	blob        layerBlob
	diffID      string
	src         blobSource
	unpackSlots *semaphore.Weighted
}

// layer returns the record of the unpacked layer diffID, or nil.
func (s *Store) layer(diffID string) *layerRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.layers[diffID]
}

// ensureLayer makes sure the layer job.diffID is unpacked. The caller holds
// a lease on "layer:"+diffID. Concurrent calls for one diff ID unpack once,
// whichever blob and pull they come from.
//
// A layer whose blob is not stored yet is unpacked while it downloads, if
// the source can stream (a registry); otherwise the blob is fetched into
// the content store first and unpacked from there.
func (s *Store) ensureLayer(ctx context.Context, job layerJob) (*layerRecord, error) {
	if rec := s.layer(job.diffID); rec != nil {
		return rec, nil
	}
	return s.unpacks.do(ctx, job.diffID, func(ctx context.Context) (*layerRecord, error) {
		if rec := s.layer(job.diffID); rec != nil {
			return rec, nil
		}
		if st, ok := job.src.(layerStreamer); ok && !s.content.has(job.blob.Digest) {
			return st.streamLayer(ctx, job)
		}
		if err := job.src.fetch(ctx, job.blob.Digest, job.blob.Size); err != nil {
			return nil, err
		}
		return s.unpack(ctx, job)
	})
}

// unpack unpacks the stored blob of job as its layer.
func (s *Store) unpack(ctx context.Context, job layerJob) (*layerRecord, error) {
	f, err := s.content.open(job.blob.Digest)
	if err != nil {
		return nil, fmt.Errorf("open layer blob: %w", err)
	}
	defer f.Close()
	return s.unpackAside(ctx, job, func(dir string) (string, error) {
		return s.unpackSlotted(ctx, job, f, dir)
	}, nil)
}

// unpackAside makes the layer job.diffID in a new .tmp- dir with fill,
// which returns the diff ID of what it unpacked, checks that against the
// image config's, and commits it (commitLayer, with beforePublish). On
// failure (a bound exceeded included) the half-written dir is trashed and
// deleted: no partial layer is left.
func (s *Store) unpackAside(ctx context.Context, job layerJob, fill func(dir string) (string, error), beforePublish func() error) (_ *layerRecord, retErr error) {
	s.hook("unpack")
	tmp, err := s.newLayerDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.discardLayerDir(ctx, tmp)
		}
	}()
	got, err := fill(tmp)
	if err != nil {
		return nil, err
	}
	if got != job.diffID {
		return nil, fmt.Errorf("layer blob %s unpacks to %s, config says %s: %w", job.blob.Digest, got, job.diffID, errdefs.ErrDataLoss)
	}
	return s.commitLayer(ctx, tmp, job.diffID, beforePublish)
}

// unpackSlotted unpacks r into dir in one of the job's unpack slots, and
// returns the diff ID of what it unpacked. The slot bounds the CPU-heavy
// part only; the commit's sync waits for the disk.
func (s *Store) unpackSlotted(ctx context.Context, job layerJob, r io.Reader, dir string) (string, error) {
	if err := job.unpackSlots.Acquire(ctx, 1); err != nil {
		return "", context.Cause(ctx)
	}
	defer job.unpackSlots.Release(1)
	diffID, err := unpackLayer(ctx, r, dir, s.limits)
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", job.diffID, err)
	}
	return diffID, nil
}

// newLayerDir makes the empty dir a layer is unpacked into. Its .tmp-
// name marks it as incomplete: a restart deletes it.
func (s *Store) newLayerDir() (string, error) {
	tmp, err := os.MkdirTemp(s.layersDir(), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("create layer dir: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("create layer dir: %w", err)
	}
	return tmp, nil
}

// discardLayerDir deletes a layer dir that will not be committed.
func (s *Store) discardLayerDir(ctx context.Context, dir string) {
	s.trashPath(ctx, dir)
	s.emptyTrash(ctx)
}

// commitLayer makes the verified layer unpacked in tmp durable and
// publishes it as diffID: synced, renamed to its number, recorded. A crash
// before the record is durable leaves a dir without a record, which the
// next load deletes. beforePublish, if set, runs once the layer's files
// are on disk and before the layer is published (a streamed layer commits
// its blob there, so that the one sync covers the blob's data too); if it
// fails, nothing is published. On error the caller deletes tmp if it still
// exists.
func (s *Store) commitLayer(ctx context.Context, tmp, diffID string, beforePublish func() error) (*layerRecord, error) {
	bytes, inodes, err := diskUsage(tmp)
	if err != nil {
		return nil, err
	}
	// The layer's files must be on disk before its name says it is
	// complete.
	if err := s.syncs.sync(s.layersDir()); err != nil {
		return nil, err
	}
	if beforePublish != nil {
		if err := beforePublish(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	id := s.nextLayer
	s.nextLayer++
	s.mu.Unlock()
	rec := &layerRecord{Version: recordVersion, DiffID: diffID, ID: id, Bytes: bytes, Inodes: inodes}
	if err := os.Rename(tmp, s.layerPath(id)); err != nil {
		return nil, fmt.Errorf("commit layer: %w", err)
	}
	if err := writeJSONAtomic(s.layerPath(id)+".json", rec); err != nil {
		s.discardLayerDir(ctx, s.layerPath(id))
		return nil, err
	}
	s.mu.Lock()
	s.layers[diffID] = rec
	s.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Unpacked layer", "diffID", diffID, "dir", s.layerPath(id), "bytes", bytes)
	return rec, nil
}

// syncGroup coalesces syncfs calls on one filesystem. A syncfs flushes
// everything dirty on the filesystem, so a request is served by the next
// syncfs to start after it, and that one call serves every request that
// arrived while the previous one ran: layers that finish together pay for
// one flush, not one each. A syncfs that started before a request could
// miss its data, so none is shared backwards.
type syncGroup struct {
	mu      sync.Mutex
	running bool
	next    *syncRound // requested, not started
}

type syncRound struct {
	done chan struct{}
	err  error
}

// sync returns once a syncfs of dir's filesystem that started after the
// call has finished, with its error.
func (g *syncGroup) sync(dir string) error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &syncRound{done: make(chan struct{})}
	}
	r := g.next
	lead := !g.running
	if lead {
		g.running, g.next = true, nil
	}
	g.mu.Unlock()
	if lead {
		g.run(dir, r)
	}
	<-r.done
	return r.err
}

// run does round r, then hands the round requested meanwhile, if any, to a
// goroutine of its own, so that r's caller does not wait for it.
func (g *syncGroup) run(dir string, r *syncRound) {
	r.err = syncFS(dir)
	g.mu.Lock()
	next := g.next
	g.next = nil
	g.running = next != nil
	g.mu.Unlock()
	close(r.done)
	if next != nil {
		go g.run(dir, next)
	}
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
