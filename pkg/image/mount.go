package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// mountOverlay mounts an overlay of lowers (top layer first) with upper and
// work on target.
//
// It uses the new mount API with one "lowerdir+" fsconfig call per layer
// (Linux >= 6.8): no single option string, so no page-size limit on the
// number of layers, and no escaping of ':' or ',' in paths. On older
// kernels it falls back to mount(2) with the classic option string, which
// fails cleanly when it would exceed a page.
func mountOverlay(lowers []string, upper, work, target string) error {
	err := fsmountOverlay(lowers, upper, work, target)
	if err == nil || !errors.Is(err, errNoNewMountAPI) {
		return err
	}
	return legacyMountOverlay(lowers, upper, work, target)
}

var errNoNewMountAPI = errors.New("kernel lacks fsopen or overlay lowerdir+")

func fsmountOverlay(lowers []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("fsopen overlay: %w: %w", err, errNoNewMountAPI)
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	set := func(key, val string) error {
		if err := unix.FsconfigSetString(fd, key, val); err != nil {
			return fmt.Errorf("overlay option %s=%s: %w%s", key, val, err, fsLog(fd))
		}
		return nil
	}
	for i, l := range lowers {
		if err := set("lowerdir+", l); err != nil {
			if i == 0 && errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("%w: %w", err, errNoNewMountAPI)
			}
			return err
		}
	}
	if err := set("upperdir", upper); err != nil {
		return err
	}
	if err := set("workdir", work); err != nil {
		return err
	}
	// Layers are shared by many mounts and a container's upper dir may be
	// mounted again over the same layers after a reboot: no inode index.
	if err := set("index", "off"); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w%s", err, fsLog(fd))
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w%s", err, fsLog(fd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}

// fsLog drains the kernel's messages about a failed fsconfig, which say
// what was wrong far better than the errno.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

func legacyMountOverlay(lowers []string, upper, work, target string) error {
	for _, p := range append([]string{upper, work}, lowers...) {
		if strings.ContainsAny(p, ":,") {
			return fmt.Errorf("overlay path %q has ':' or ',': %w", p, errdefs.ErrInvalidArgument)
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work + ",index=off"
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options for %d layers are %d bytes, over the %d-byte limit of mount(2) (kernel < 6.8 has no lowerdir+): %w",
			len(lowers), len(opts), os.Getpagesize(), errdefs.ErrResourceExhausted)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// isMounted reports whether path is a mount point in this mount namespace.
func isMounted(path string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll removes every mount stacked on path. A busy mount is retried
// briefly, then reported as a failed precondition: lazily detaching it
// would let the caller delete files a process still uses.
func unmountAll(path string) error {
	for range 16 {
		mounted, err := isMounted(path)
		if err != nil || !mounted {
			return err
		}
		var uerr error
		for try := 0; try < 25; try++ {
			uerr = unix.Unmount(path, unix.UMOUNT_NOFOLLOW)
			if !errors.Is(uerr, unix.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		switch {
		case uerr == nil, errors.Is(uerr, unix.EINVAL), errors.Is(uerr, unix.ENOENT):
		case errors.Is(uerr, unix.EBUSY):
			return fmt.Errorf("unmount %s: %w: %w", path, uerr, errdefs.ErrFailedPrecondition)
		default:
			return fmt.Errorf("unmount %s: %w", path, uerr)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", path)
}
