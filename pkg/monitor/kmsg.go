package monitor

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// kmsgOOM follows the kernel log (/dev/kmsg) for OOM kills and remembers
// the memory cgroup of each victim. It is the exact witness: the kernel
// writes "oom-kill:...,task_memcg=<path>,..." before it sends the SIGKILL, so
// when the monitor reaps a container's init, draining /dev/kmsg shows whether
// the OOM killer took it, even where the cgroup is already gone (a systemd
// scope is removed once empty) and even where memory.events' file
// notification (deferred by the kernel through a workqueue) has not arrived.
// kubelet's own OOM watcher (cadvisor) reads the same lines.
type kmsgOOM struct {
	mu     sync.Mutex
	fd     int                  // -1: no /dev/kmsg (the other sources remain)
	killed map[string]time.Time // task_memcg path -> when seen
	buf    []byte
}

// kmsgRecordMax is the largest record /dev/kmsg hands out (a read with a
// smaller buffer fails with EINVAL).
const kmsgRecordMax = 8192

func newKmsgOOM(path string) *kmsgOOM {
	k := &kmsgOOM{fd: -1, killed: map[string]time.Time{}, buf: make([]byte, kmsgRecordMax)}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return k
	}
	// Only what happens from now on: older kills are not ours to report.
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return k
	}
	k.fd = fd
	go k.follow()
	return k
}

// follow drains the log as it grows, so the kernel's ring buffer never
// overwrites a line before it is read.
func (k *kmsgOOM) follow() {
	for {
		fds := []unix.PollFd{{Fd: int32(k.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 1000); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		k.drain()
	}
}

// drain reads every record available now. Called by the exit handler too:
// a kill logged just before the exit is then known before the exit is
// recorded.
func (k *kmsgOOM) drain() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd < 0 {
		return
	}
	for {
		n, err := unix.Read(k.fd, k.buf)
		if errors.Is(err, unix.EPIPE) {
			continue // the ring buffer overwrote records: go on from the next
		}
		if err != nil || n <= 0 {
			return // EAGAIN: nothing more now
		}
		if path, ok := parseOOMKill(k.buf[:n]); ok {
			k.killed[path] = time.Now()
		}
	}
}

// killedIn reports whether a process of the memory cgroup at path (as the
// kernel names it, "/test.slice/cri-shim-ID.scope") was OOM-killed, and
// forgets it.
func (k *kmsgOOM) killedIn(path string) bool {
	k.drain()
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.killed[path]
	delete(k.killed, path)
	// Kills in cgroups nobody asked about (not containers of ours) are
	// dropped after a while so the map stays small.
	for p, at := range k.killed {
		if time.Since(at) > 10*time.Minute {
			delete(k.killed, p)
		}
	}
	return ok
}

// parseOOMKill extracts task_memcg from a /dev/kmsg record of an OOM kill:
// "6,1234,5678,-;oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a,task_memcg=/a/b,task=dd,pid=9,uid=0".
func parseOOMKill(record []byte) (string, bool) {
	_, msg, ok := bytes.Cut(record, []byte{';'})
	if !ok {
		return "", false
	}
	line, _, _ := bytes.Cut(msg, []byte{'\n'}) // continuation lines follow
	rest, ok := strings.CutPrefix(string(line), "oom-kill:")
	if !ok {
		return "", false
	}
	for _, kv := range strings.Split(rest, ",") {
		if v, ok := strings.CutPrefix(kv, "task_memcg="); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// kernelCgroupPath is how the kernel's log names the memory cgroup of
// dir: its path below the v2 root or the v1 memory hierarchy.
func kernelCgroupPath(dir string) string {
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		if p, ok := strings.CutPrefix(dir, root); ok && strings.HasPrefix(p, "/") {
			return p
		}
	}
	return ""
}
