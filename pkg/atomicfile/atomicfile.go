// Package atomicfile replaces a file so that readers, and a crash or power
// loss, see either the old content or the new one, never a mix: write a temp
// file in the same directory, fsync it, rename it over the target, fsync the
// directory. Records whose loss would leak or lose something (sandbox and
// container records, exit records, image metadata, the CNI config) are
// written this way.
package atomicfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm), durably.
func Write(path string, data []byte, perm os.FileMode) error { return write(path, data, perm, true) }

// Replace replaces path with data atomically but without waiting for the
// disk: a process crash sees the old or the new content, a power loss may
// lose the change. For files whose loss on power loss is harmless: under
// cri-shim's --state (cleared by a reboot anyway) and state changes whose
// only consequence after a reboot is the same as losing them.
func Replace(path string, data []byte, perm os.FileMode) error { return write(path, data, perm, false) }

func write(path string, data []byte, perm os.FileMode, durable bool) (err error) {
	dir := filepath.Dir(path)
	// Hidden and ending in ".tmp": directory watchers that load by
	// extension (libcni loads *.conf, *.conflist) never pick it up.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	// The rename is durable only once the directory is.
	d, err := os.Open(dir)
	if err != nil {
		return nil // the file is in place; only durability is weaker
	}
	defer d.Close()
	d.Sync()
	return nil
}

// WriteJSON replaces path with v encoded as JSON, durably.
func WriteJSON(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return Write(path, data, perm)
}

// ReplaceJSON replaces path with v encoded as JSON, atomically but not
// durably (see Replace).
func ReplaceJSON(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return Replace(path, data, perm)
}
