package monitor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oomWatcher follows the OOM kills of containers' memory cgroups while they
// run. On cgroup v2 the kernel signals every change of memory.events as a
// file modification (Documentation/admin-guide/cgroup-v2.rst), so inotify
// sees a kill as it happens. Reading the file only at exit is not enough:
// with the systemd driver, systemd removes a scope's cgroup as soon as its
// last process is gone, which races with the exit handler. On cgroup v1
// (memory.oom_control, no inotify) the directory outlives the processes and
// is read at exit.
type oomWatcher struct {
	fd   int // inotify; -1 when unavailable
	mu   sync.Mutex
	byWd map[int]*container
}

func newOOMWatcher() *oomWatcher {
	w := &oomWatcher{fd: -1, byWd: map[int]*container{}}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return w // exit-time reads still work where the cgroup survives
	}
	w.fd = fd
	go w.loop()
	return w
}

// watch starts following c's cgroup (rec.CgroupDir), if it has a v2
// memory.events file.
func (w *oomWatcher) watch(c *container) {
	if w.fd < 0 || c.rec.CgroupDir == "" {
		return
	}
	file := filepath.Join(c.rec.CgroupDir, "memory.events")
	wd, err := unix.InotifyAddWatch(w.fd, file, unix.IN_MODIFY)
	if err != nil {
		return // v1, or already gone
	}
	w.mu.Lock()
	w.byWd[wd] = c
	c.oomWd = wd
	w.mu.Unlock()
	// A kill before the watch existed is in the file already.
	if OOMKills(c.rec.CgroupDir) > 0 {
		c.oomKilled.Store(true)
	}
}

// forget stops following c (its record is being dropped).
func (w *oomWatcher) forget(c *container) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.oomWd > 0 && w.byWd[c.oomWd] == c {
		delete(w.byWd, c.oomWd)
		unix.InotifyRmWatch(w.fd, uint32(c.oomWd))
	}
	c.oomWd = 0
}

func (w *oomWatcher) loop() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := unix.Read(w.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			c := w.byWd[int(ev.Wd)]
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(w.byWd, int(ev.Wd)) // the cgroup is gone
			}
			w.mu.Unlock()
			if c != nil && ev.Mask&unix.IN_MODIFY != 0 && OOMKills(c.rec.CgroupDir) > 0 {
				c.oomKilled.Store(true)
			}
		}
	}
}

// OOMKills reads the number of OOM kills in a memory cgroup directory:
// "oom_kill N" of memory.events (v2) or memory.oom_control (v1). 0 when it
// cannot be read.
func OOMKills(dir string) int {
	if dir == "" {
		return 0
	}
	for _, file := range []string{"memory.events", "memory.oom_control"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
	}
	return 0
}
