package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
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

// ensureLayer makes sure the layer diffID is unpacked, from the blob
// blobDigest. The caller holds a lease on "layer:"+diffID and on the blob.
// Concurrent calls for one diff ID unpack once.
func (s *Store) ensureLayer(ctx context.Context, diffID, blobDigest string) (*layerRecord, error) {
	s.mu.RLock()
	rec := s.layers[diffID]
	s.mu.RUnlock()
	if rec != nil {
		return rec, nil
	}
	return s.unpacks.do(ctx, diffID, func(ctx context.Context) (*layerRecord, error) {
		s.mu.RLock()
		rec := s.layers[diffID]
		s.mu.RUnlock()
		if rec != nil {
			return rec, nil
		}
		return s.unpack(ctx, diffID, blobDigest)
	})
}

func (s *Store) unpack(ctx context.Context, diffID, blobDigest string) (_ *layerRecord, retErr error) {
	logger := klog.FromContext(ctx)
	f, err := s.content.open(blobDigest)
	if err != nil {
		return nil, fmt.Errorf("open layer blob: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(s.layersDir(), ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("create layer dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			s.trashPath(ctx, tmp)
			s.emptyTrash(ctx)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	// On failure (a bound exceeded included) the deferred cleanup above
	// trashes and deletes the half-written dir: no partial layer is left.
	got, err := unpackLayer(ctx, f, tmp, s.limits)
	if err != nil {
		return nil, fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	if got != diffID {
		return nil, fmt.Errorf("layer blob %s unpacks to %s, config says %s: %w", blobDigest, got, diffID, errdefs.ErrDataLoss)
	}
	bytes, inodes, err := diskUsage(tmp)
	if err != nil {
		return nil, err
	}
	// The layer's files must be on disk before its name says it is
	// complete.
	if err := syncFS(tmp); err != nil {
		return nil, err
	}
	s.mu.Lock()
	id := s.nextLayer
	s.nextLayer++
	s.mu.Unlock()
	rec := &layerRecord{Version: recordVersion, DiffID: diffID, ID: id, Bytes: bytes, Inodes: inodes}
	if err := os.Rename(tmp, s.layerPath(id)); err != nil {
		return nil, fmt.Errorf("commit layer: %w", err)
	}
	tmp = s.layerPath(id) // what to remove if recording fails
	if err := writeJSONAtomic(s.layerPath(id)+".json", rec); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.layers[diffID] = rec
	s.mu.Unlock()
	logger.V(2).Info("Unpacked layer", "diffID", diffID, "dir", s.layerPath(id), "bytes", bytes)
	return rec, nil
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
