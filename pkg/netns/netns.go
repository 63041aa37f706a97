// Package netns creates, pins, enters and removes network namespaces (and
// the user namespace that owns a user-namespaced pod's network namespace).
//
// A namespace is pinned by bind-mounting its nsfs file onto a regular file,
// so it outlives every process in it (the pause container may die; the pod's
// network must not). Go schedules goroutines on arbitrary OS threads and
// setns(2) is per thread, so every function here that changes a thread's
// namespace does it on a goroutine that locks its thread and never unlocks
// it: when the goroutine ends, the runtime kills the thread instead of
// reusing it in a foreign namespace (see containernetworking/plugins
// pkg/ns/README.md).
package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// New creates a network namespace pinned at path (its directory must exist
// or is created) and brings its loopback up. On error nothing is left.
func New(path string) (err error) {
	if err := createPin(path); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()

	errc := make(chan error, 1)
	go func() {
		// Locked and never unlocked: this thread ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pin network namespace at %s: %w", path, err)
			return
		}
		if err := loopbackUp(); err != nil {
			unix.Unmount(path, unix.MNT_DETACH)
			errc <- err
			return
		}
		errc <- nil
	}()
	return <-errc
}

// loopbackUp sets lo up in the calling thread's namespace with one ioctl
// (cheaper than opening a netlink socket for it).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// Remove unpins the namespace at path and deletes the pin. The kernel frees
// the namespace (and removes its links asynchronously) once nothing else
// holds it. A missing or already unmounted pin is success.
func Remove(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove network namespace pin %s: %w", path, err)
	}
	return nil
}

// IsPinned reports whether path holds a mounted network namespace.
func IsPinned(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// Do runs fn on a thread inside the namespace at path. The thread is never
// reused afterwards. Sockets fn creates stay in that namespace, so a caller
// may create listeners or dialers there and use them from anywhere.
func Do(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see the package doc
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// NewInUserNS creates a user namespace with the given ID mappings and a
// network namespace owned by it, pinned at userPath and path, and brings the
// network namespace's loopback up. A pod whose containers run in a user
// namespace needs its network namespace owned by that user namespace:
// otherwise the containers' root cannot mount sysfs or set net.* sysctls.
// (CRI-O's pinns -U and containerd 2.x do the same.)
//
// The kernel makes a user namespace only for a new process, and Go cannot
// fork without exec: holder (StartInUserNS) is started in both new
// namespaces, they are pinned through /proc and it is killed. On error
// nothing is left.
func NewInUserNS(path, userPath string, holder []string, uids, gids []syscall.SysProcIDMap) (err error) {
	var pins []string
	defer func() {
		if err != nil {
			for _, p := range pins {
				Remove(p)
			}
		}
	}()
	for _, p := range []string{userPath, path} {
		if err := createPin(p); err != nil {
			return err
		}
		pins = append(pins, p)
	}
	cmd, err := StartInUserNS(holder, syscall.CLONE_NEWNET, uids, gids)
	if err != nil {
		return err
	}
	defer StopHolder(cmd)
	for t, p := range map[string]string{"user": userPath, "net": path} {
		src := fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, t)
		if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin %s namespace at %s: %w", t, p, err)
		}
	}
	return Do(path, loopbackUp)
}

// createPin creates the empty file a namespace is bind-mounted on (and its
// directory); an existing one is an error, so a pin is never shared.
func createPin(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create namespace pin directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace pin %s: %w", path, err)
	}
	return f.Close()
}

// StartInUserNS starts holder (a command line that just waits) in a new user
// namespace with the given mappings, and in the new namespaces of flags
// (CLONE_NEW*), so that its /proc/PID/ns files can be opened or pinned.
// setgroups stays allowed (containers set supplementary groups). The
// caller ends it with StopHolder.
func StartInUserNS(holder []string, flags uintptr, uids, gids []syscall.SysProcIDMap) (*exec.Cmd, error) {
	if len(holder) == 0 {
		return nil, errors.New("no program to hold the new namespaces")
	}
	cmd := exec.Command(holder[0], holder[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | flags,
		UidMappings: uids, GidMappings: gids, GidMappingsEnableSetgroups: true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a process in a new user namespace (%s): %w", holder, err)
	}
	return cmd, nil
}

// StopHolder kills and reaps a process StartInUserNS started.
func StopHolder(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}
