package pod

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/cri-shim/cri-shim/pkg/atomicfile"
	"github.com/cri-shim/cri-shim/pkg/keylock"
)

// store keeps records of one kind in memory and on disk, one directory per
// object (<dir>/<id>/<file>), each written atomically (temp file, fsync,
// rename). Records are immutable once stored: update copies, changes and
// replaces, so readers never see a half-changed record and need no lock
// beyond the map's.
type store[T any] struct {
	dir     string
	file    string
	mu      sync.RWMutex
	items   map[string]*T
	updates keylock.Map // one read-copy-write at a time per record
}

func newStore[T any](dir, file string) (*store[T], error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &store[T]{dir: dir, file: file, items: map[string]*T{}}, nil
}

func (s *store[T]) path(id string) string { return filepath.Join(s.dir, id, s.file) }

func (s *store[T]) get(id string) (*T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.items[id]
	return v, ok
}

func (s *store[T]) list() []*T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*T, 0, len(s.items))
	for _, v := range s.items {
		out = append(out, v)
	}
	return out
}

// put persists a new record durably and makes it current: the first write
// of a record is the intent that recovery acts on after a crash or power
// loss (it guards the side effects that follow: addresses, rootfs dirs).
func (s *store[T]) put(id string, v *T) error {
	if err := writeJSONAtomic(s.path(id), v); err != nil {
		return fmt.Errorf("save record %s: %w", id, err)
	}
	s.mu.Lock()
	s.items[id] = v
	s.mu.Unlock()
	return nil
}

// update is the one mutation path: fn edits a copy of the current record;
// the copy is persisted, then published. Updates of one record are
// serialised, so an exit recorded by the exit watcher and a state change by
// an RPC never overwrite each other.
func (s *store[T]) update(id string, fn func(*T) error) (*T, error) {
	unlock := s.updates.Lock(id)
	defer unlock()
	cur, ok := s.get(id)
	if !ok {
		return nil, fmt.Errorf("record %s: %w", id, fs.ErrNotExist)
	}
	next := *cur
	if err := fn(&next); err != nil {
		return nil, err
	}
	// State changes are atomic but not fsynced: losing one to a power loss
	// is the same as what recovery does after a reboot anyway (everything
	// is NotReady or exited), and they are on every hot path.
	if err := atomicfile.ReplaceJSON(s.path(id), &next, 0o600); err != nil {
		return nil, fmt.Errorf("save record %s: %w", id, err)
	}
	s.mu.Lock()
	s.items[id] = &next
	s.mu.Unlock()
	return &next, nil
}

// remember publishes a record without persisting it (records that could
// not be read from disk).
func (s *store[T]) remember(id string, v *T) {
	s.mu.Lock()
	s.items[id] = v
	s.mu.Unlock()
}

// delete removes the record and its directory.
func (s *store[T]) delete(id string) error {
	if err := os.RemoveAll(filepath.Join(s.dir, id)); err != nil {
		return fmt.Errorf("delete record %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.items, id)
	s.mu.Unlock()
	return nil
}

// ids lists the record directories on disk.
func (s *store[T]) ids() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// read decodes one record from disk.
func (s *store[T]) read(id string) (*T, error) {
	data, err := os.ReadFile(s.path(id))
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", s.path(id), err)
	}
	return v, nil
}

func writeJSONAtomic(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteJSON(path, v, 0o600)
}
