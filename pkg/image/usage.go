package image

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Usage is the image filesystem usage for CRI ImageFsInfo.
type Usage struct {
	// Mountpoint is the store's root directory: a path on the filesystem
	// that holds the images, which is what kubelet needs to find it.
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// FsUsage reports the space taken by image content and unpacked layers
// (and records). Container writable layers are not included: they are
// reported per container by RootfsUsage. Layer usage is counted when a
// layer is unpacked, so this does not walk the layers.
func (s *Store) FsUsage() (Usage, error) {
	u := Usage{Mountpoint: s.root}
	s.mu.RLock()
	for _, l := range s.layers {
		u.UsedBytes += l.Bytes
		u.InodesUsed += l.Inodes
	}
	s.mu.RUnlock()
	for _, dir := range []string{s.content.dir, s.imagesDir()} {
		b, i, err := diskUsage(dir)
		if err != nil {
			return Usage{}, err
		}
		u.UsedBytes += b
		u.InodesUsed += i
	}
	return u, nil
}

// diskUsage is du: allocated bytes and inodes under dir, counting hardlinked
// inodes once.
func diskUsage(dir string) (bytes, inodes uint64, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return bytes, inodes, nil
}
