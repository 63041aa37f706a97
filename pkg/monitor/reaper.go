package monitor

import (
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper is the only caller of wait(2) in the monitor. Processes it started
// itself (the runtime's create) register a waiter before they can exit;
// container init processes are registered as containers; anything else
// (orphans adopted as subreaper) is reaped and its status kept briefly,
// because a container can exit before its create call has read the pid
// file.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	onExit  func(pid int, ws unix.WaitStatus) bool // true: the pid was a container
	orphans map[int]unix.WaitStatus
}

func newReaper(onExit func(int, unix.WaitStatus) bool) *reaper {
	return &reaper{waiters: map[int]chan unix.WaitStatus{}, orphans: map[int]unix.WaitStatus{}, onExit: onExit}
}

// start runs the SIGCHLD loop.
func (r *reaper) start() {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		for range ch {
			r.reapAll()
		}
	}()
}

func (r *reaper) reapAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
		if w, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			w <- ws // buffered
			continue
		}
		// onExit runs under r.mu so that "not a container yet" and
		// "remember as orphan" are one step with respect to takeOrphan:
		// a create that registers its pid and then looks for an orphan
		// cannot fall between the two.
		if !r.onExit(pid, ws) {
			if len(r.orphans) >= 1024 { // bound it: stale orphans are nobody's
				clear(r.orphans)
			}
			r.orphans[pid] = ws
		}
	}
}

// startProcess starts a process whose exit status the caller will collect
// with the returned channel.
func (r *reaper) startProcess(argv0 string, argv []string, attr *os.ProcAttr) (<-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(argv0, argv, attr)
	if err != nil {
		return nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[p.Pid] = ch
	p.Release() // the reaper, not os.Process, waits for it
	return ch, nil
}

// takeOrphan returns the status of pid if it was reaped before anyone
// claimed it.
func (r *reaper) takeOrphan(pid int) (unix.WaitStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws, ok := r.orphans[pid]
	delete(r.orphans, pid)
	return ws, ok
}

// exitCode follows the shell convention CRI uses: 128+signal when killed.
func exitCode(ws unix.WaitStatus) (code, sig int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
