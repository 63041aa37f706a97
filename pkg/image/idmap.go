package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// IDMap makes a rootfs for a container in a user namespace (KEP-127): the
// image's layers are mounted idmapped through the user namespace, so their
// files keep the owners they have in the image (root's files are the
// container root's), and the writable layer belongs to the container's
// root. Without it every file of the image would be nobody's inside.
type IDMap struct {
	// UserNS is the path of the user namespace whose mappings apply: a
	// pinned nsfs file or /proc/PID/ns/user.
	UserNS string
	// UID and GID are the host IDs of the container's root (the mappings'
	// host IDs for container ID 0).
	UID, GID uint32
}

// PrepareIDMappedRootfs is PrepareRootfs for a container in the user
// namespace of m: the overlay's lower layers are idmapped mounts of the
// image's layers (overlayfs takes idmapped layers since Linux 5.19), its
// upper dir is owned by the container's root.
func (s *Store) PrepareIDMappedRootfs(ctx context.Context, imageID, key string, m IDMap) (string, error) {
	return s.prepareRootfs(ctx, imageID, key, &m)
}

// idmapLayers mounts each of lowers idmapped through the user namespace at
// userns under dir/0, dir/1, ... and returns those paths. done detaches
// them: overlayfs holds private clones of its layers, so once the overlay is
// mounted they are not needed. A dir left by a crash is cleared first.
func idmapLayers(lowers []string, dir, userns string) (mapped []string, done func(), err error) {
	clearIDMapDir(dir)
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open user namespace %s: %w", userns, err)
	}
	defer unix.Close(nsfd)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create idmap dir: %w", err)
	}
	done = func() { clearIDMapDir(dir) }
	for i, l := range lowers {
		target := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(target, 0o700); err != nil {
			done()
			return nil, nil, fmt.Errorf("create idmap dir: %w", err)
		}
		if err := MountIDMapped(l, target, nsfd); err != nil {
			done()
			return nil, nil, err
		}
		mapped = append(mapped, target)
	}
	return mapped, done, nil
}

// clearIDMapDir detaches the mounts under dir and removes it.
func clearIDMapDir(dir string) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	for _, e := range entries {
		unix.Unmount(filepath.Join(dir, e.Name()), unix.MNT_DETACH)
	}
	os.RemoveAll(dir)
}

// MountIDMapped mounts a clone of the tree at src on target, idmapped
// through the user namespace open at usernsFD (open_tree, mount_setattr
// MOUNT_ATTR_IDMAP, move_mount).
func MountIDMapped(src, target string, usernsFD int) error {
	fd, err := idmappedTree(src, usernsFD)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach idmapped mount of %s at %s: %w", src, target, err)
	}
	return nil
}

// CheckIDMapped reports whether the filesystem of dir takes idmapped mounts
// (Linux >= 5.12 and a filesystem that allows them: ext4, xfs, btrfs,
// tmpfs >= 6.3, ...), trying one through the user namespace at usernsFD
// without attaching it anywhere.
func CheckIDMapped(dir string, usernsFD int) error {
	fd, err := idmappedTree(dir, usernsFD)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func idmappedTree(src string, usernsFD int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("clone the mount of %s: %w", src, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(usernsFD)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("idmap the mount of %s: %w", src, err)
	}
	return fd, nil
}
