package pod

import (
	"context"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/monitor"
)

// exitWaiter lets callers wait for a process (container or pause) to exit,
// as reported by the monitor.
type exitWaiter struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
	exits map[string]monitor.Exit
}

func newExitWaiter() *exitWaiter {
	return &exitWaiter{chans: map[string]chan struct{}{}, exits: map[string]monitor.Exit{}}
}

// track starts watching id (a created container or pause).
func (w *exitWaiter) track(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.chans[id]; !ok {
		w.chans[id] = make(chan struct{})
	}
}

func (w *exitWaiter) tracked() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for id := range w.chans {
		if _, done := w.exits[id]; !done {
			ids = append(ids, id)
		}
	}
	return ids
}

// done records an exit; later calls for the same ID are ignored.
func (w *exitWaiter) done(e monitor.Exit) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.exits[e.ID]; dup {
		return false
	}
	w.exits[e.ID] = e
	if ch, ok := w.chans[e.ID]; ok {
		close(ch)
	} else {
		ch := make(chan struct{})
		close(ch)
		w.chans[e.ID] = ch
	}
	return true
}

// exited reports whether id's process is known to have exited.
func (w *exitWaiter) exited(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.exits[id]
	return ok
}

// wait blocks until id exits, ctx ends or timeout passes.
func (w *exitWaiter) wait(ctx context.Context, id string, timeout time.Duration) bool {
	w.mu.Lock()
	ch, ok := w.chans[id]
	w.mu.Unlock()
	if !ok {
		return true // never tracked: nothing runs
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (w *exitWaiter) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.chans, id)
	delete(w.exits, id)
}

// watchExits follows the monitor's exit events for the life of the
// process. When the monitor goes away it is restarted, and exits recorded
// meanwhile are picked up from its exit files.
func (m *Manager) watchExits(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for ctx.Err() == nil {
		events, err := m.monitor.Events(ctx)
		if err != nil {
			logger.Error(err, "Container monitor unreachable, restarting it")
			if err := m.monitor.Ensure(ctx); err != nil {
				logger.Error(err, "Restart container monitor")
				time.Sleep(time.Second)
			}
			continue
		}
		// Subscribed: anything that exited before is in the files.
		for _, id := range m.exits.tracked() {
			if e, err := m.monitor.ReadExit(id); err == nil && e != nil {
				m.handleExit(ctx, *e)
			}
		}
		for e := range events {
			m.handleExit(ctx, e)
		}
	}
}

// handleExit records an exit in the container's record (or marks a
// sandbox whose pause died NotReady), then wakes waiters.
func (m *Manager) handleExit(ctx context.Context, e monitor.Exit) {
	// A container whose record could not be read stays Unknown (kubelet
	// removes it) and its record untouched: writing what little is known
	// of it over the record would lose the rest.
	if c, ok := m.containers.get(e.ID); ok && c.State != ContainerExited && c.Unknown == "" {
		reason := e.Reason
		if reason == "" {
			reason = "Completed"
			if e.ExitCode != 0 {
				reason = "Error"
			}
			// The monitor follows memory.events while the container runs
			// (a systemd scope's cgroup is gone by now); a cgroup that
			// outlives its processes is read here too.
			if e.OOMKilled || m.oomKilled(c) {
				reason = "OOMKilled"
			}
		}
		updated, err := m.containers.update(e.ID, func(c *Container) error {
			if c.State == ContainerExited {
				return nil
			}
			if err := c.setState(ContainerExited); err != nil {
				return err
			}
			c.ExitCode, c.FinishedAt, c.Reason = int32(e.ExitCode), e.FinishedAt, reason
			return nil
		})
		if err != nil {
			klog.FromContext(ctx).Error(err, "Record container exit", "containerID", e.ID)
		} else {
			m.events.container(updated, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
		}
	}
	if sb, ok := m.sandboxes.get(e.ID); ok && sb.State == SandboxReady {
		// The pause process died: the pod's namespaces may be gone, so
		// kubelet must recreate the sandbox.
		if _, err := m.sandboxes.update(e.ID, func(s *Sandbox) error {
			if s.State == SandboxReady {
				return s.setState(SandboxNotReady)
			}
			return nil
		}); err != nil {
			klog.FromContext(ctx).Error(err, "Record pause exit", "podSandboxID", e.ID)
		}
	}
	m.exits.done(e)
}
