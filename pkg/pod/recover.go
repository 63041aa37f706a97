package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/monitor"
	"github.com/cri-shim/cri-shim/pkg/netns"
)

// recover rebuilds memory from the records, the monitor's exit files and
// the kernel, one object at a time: a record it cannot read is reported,
// never fatal. Half-made containers are undone. After a reboot (the
// runtime's state under --state is gone) every container is exited and
// every sandbox NotReady. What needs the network (CNI DEL of half-made and
// stopped sandboxes, CNI GC) is returned as steps for finishRecovery, which
// runs them after cri-shim serves: a CNI plugin that hangs must not keep
// kubelet from the rest of the node.
func (m *Manager) recover(ctx context.Context) []recoveryStep {
	var steps []recoveryStep
	logger := klog.FromContext(ctx)
	ids, err := m.sandboxes.ids()
	if err != nil {
		logger.Error(err, "List sandbox records")
	}
	for _, id := range ids {
		sb, err := m.sandboxes.read(id)
		if err != nil {
			logger.Error(err, "Unreadable sandbox record, reporting it NotReady", "podSandboxID", id)
			// What it may hold is found by its ID alone (the pin and /dev/shm
			// paths derive from it), so removing it releases everything.
			sb := &Sandbox{ID: id, State: SandboxNotReady, Unknown: err.Error(),
				Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: id, Namespace: "unknown", Uid: id}}}
			if p := filepath.Join(m.netnsDir(), id); netns.IsPinned(p) {
				sb.NetNS, sb.CNIAdded = p, true
			}
			if p := filepath.Join(m.usernsDir(), id); netns.IsPinned(p) {
				sb.UserNS = p
			}
			if p := filepath.Join(m.cfg.State, "shm", id); dirExists(p) {
				sb.ShmPath = p
			}
			m.sandboxes.remember(id, sb)
			continue
		}
		m.sandboxes.remember(id, sb)
		if sb.State == SandboxCreating {
			logger.Info("Undoing a sandbox left half made", "podSandboxID", id)
			steps = append(steps, recoveryStep{what: "Undo half-made sandbox", id: id, run: m.undoHalfMadeSandbox})
			continue
		}
		m.names.reserve(podName(sb.Config.GetMetadata()), id)
		rt := m.runtimeFor(sb.Handler)
		if sb.State == SandboxReady && !rt.Exists(id) {
			// Rebooted (or the pause was deleted behind our back): the
			// pod's namespaces are gone.
			m.sandboxes.update(id, func(s *Sandbox) error { return s.setState(SandboxNotReady) })
		}
		if !rt.Exists(id) {
			m.removeCgroup(sb, id)
		}
		if rt.Exists(id) {
			m.exits.track(id)
		}
	}

	cids, err := m.containers.ids()
	if err != nil {
		logger.Error(err, "List container records")
	}
	for _, id := range cids {
		c, err := m.containers.read(id)
		if err != nil {
			logger.Error(err, "Unreadable container record, reporting it Unknown", "containerID", id)
			m.containers.remember(id, &Container{ID: id, State: ContainerUnknown, Unknown: err.Error(),
				Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: id}}})
			continue
		}
		m.containers.remember(id, c)
		if c.State == ContainerCreating {
			logger.Info("Undoing a container left half made", "containerID", id)
			if err := m.undoContainer(ctx, c); err != nil {
				logger.Error(err, "Undo half-made container", "containerID", id)
			}
			continue
		}
		m.names.reserve(containerName(c.SandboxID, c.Config.GetMetadata()), id)
		rt := m.runtimeOf(c)
		if !rt.Exists(id) {
			// Rebooted, or removed from the runtime before a crash: the
			// kernel may keep an empty cgroup (a simulated reboot does),
			// whatever state the record was in.
			if sb, ok := m.sandboxes.get(c.SandboxID); ok {
				m.removeCgroup(sb, id)
			}
		}
		if c.State == ContainerExited {
			continue
		}
		if e, err := m.monitor.ReadExit(id); err == nil && e != nil {
			m.handleExit(ctx, *e)
			continue
		}
		if !rt.Exists(id) {
			// Rebooted: the process is gone, the kernel may keep an empty
			// cgroup (a simulated reboot does).
			m.handleExit(ctx, monitor.Exit{ID: id, ExitCode: 255, FinishedAt: time.Now(), Reason: "Unknown"})
			continue
		}
		m.exits.track(id)
		if c.State == ContainerCreated {
			// A crash between runc start and recording it.
			if st, err := rt.State(ctx, id); err == nil && st.Status == "running" {
				m.containers.update(id, func(c *Container) error {
					if c.State == ContainerCreated {
						c.StartedAt = time.Now()
						return c.setState(ContainerRunning)
					}
					return nil
				})
			}
		}
	}

	// Sandboxes that are not ready must not hold network resources: after
	// a reboot nobody else will ever release them.
	for _, sb := range m.sandboxes.list() {
		if sb.State == SandboxNotReady && (sb.CNIAdded || netns.IsPinned(sb.NetNS)) {
			steps = append(steps, recoveryStep{what: "Release the network of a stopped sandbox", id: sb.ID, run: m.StopPod})
		}
	}
	return steps
}

// recoveryStep is a part of recovery that may block (on a CNI plugin):
// run for the object id, idempotent, done when it returns nil.
type recoveryStep struct {
	what string // for the log
	id   string
	run  func(ctx context.Context, id string) error
}

// Recovery timing: each step gets its own deadline; failed steps are
// retried with a growing pause until they succeed or cri-shim stops.
var (
	recoveryStepTimeout = time.Minute
	recoveryRetryFirst  = time.Second
	recoveryRetryMax    = 5 * time.Minute
)

// finishRecovery runs the blocking steps of recovery in the background,
// then CNI GC with the attachments of the ready sandboxes (which releases
// what the DELs could not, once they are through). Until a step has run,
// its sandbox is listed NotReady (or, half made, not at all), as it would
// be anyway, and kubelet's own Stop/Remove do the same work under the same
// lock.
func (m *Manager) finishRecovery(ctx context.Context, steps []recoveryStep) {
	logger := klog.FromContext(ctx)
	backoff := recoveryRetryFirst
	for {
		var failed []recoveryStep
		for _, s := range steps {
			stepCtx, cancel := context.WithTimeout(ctx, recoveryStepTimeout)
			err := s.run(stepCtx, s.id)
			cancel()
			if err != nil {
				logger.Error(err, s.what+"; will retry", "podSandboxID", s.id, "retryIn", backoff)
				failed = append(failed, s)
			}
		}
		gcCtx, cancel := context.WithTimeout(ctx, recoveryStepTimeout)
		m.collectNetwork(gcCtx)
		cancel()
		if len(failed) == 0 {
			logger.V(2).Info("Recovery finished")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		steps, backoff = failed, min(2*backoff, recoveryRetryMax)
	}
}

// undoHalfMadeSandbox undoes a sandbox that was being made when cri-shim
// died. If that fails, the sandbox is shown NotReady (kubelet then removes
// it, which does the same) instead of staying hidden, and it is retried.
func (m *Manager) undoHalfMadeSandbox(ctx context.Context, id string) error {
	unlock := m.locks.Lock(id)
	sb, ok := m.sandboxes.get(id)
	if ok && sb.State == SandboxCreating {
		err := m.undoSandbox(ctx, sb)
		if err != nil {
			if _, uerr := m.sandboxes.update(id, func(s *Sandbox) error {
				if s.State == SandboxCreating {
					return s.setState(SandboxNotReady)
				}
				return nil
			}); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
		unlock()
		return err
	}
	unlock()
	if ok && sb.State == SandboxNotReady {
		// An earlier undo failed and left it NotReady: release what it
		// holds as for any stopped sandbox (StopPod takes the lock).
		return m.StopPod(ctx, id)
	}
	return nil // removed meanwhile
}

// collectNetwork runs CNI GC with the attachments of the ready sandboxes.
func (m *Manager) collectNetwork(ctx context.Context) {
	var live []*Sandbox
	for _, sb := range m.sandboxes.list() {
		if sb.State == SandboxReady && sb.NetNS != "" {
			live = append(live, sb)
		}
	}
	if err := m.network.gc(ctx, live); err != nil {
		klog.FromContext(ctx).V(2).Info("CNI GC", "err", err)
	}
}

// undoSandbox removes everything a half-made sandbox may have: the pause
// container, the network attachment, the netns, /dev/shm and the record.
func (m *Manager) undoSandbox(ctx context.Context, sb *Sandbox) error {
	var errs []error
	errs = append(errs, m.removePause(ctx, sb.ID, sb.Handler, sb.PausePid, sb.PauseStartTime))
	if sb.CNIAdded {
		errs = append(errs, m.network.teardown(ctx, sb))
	}
	if sb.NetNS != "" {
		errs = append(errs, netns.Remove(sb.NetNS))
	}
	if sb.UserNS != "" {
		errs = append(errs, netns.Remove(sb.UserNS))
	}
	if sb.ShmPath != "" {
		errs = append(errs, unmountShm(sb.ShmPath))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return m.sandboxes.delete(sb.ID)
}

// undoContainer removes a half-made container.
func (m *Manager) undoContainer(ctx context.Context, c *Container) error {
	errs := []error{
		m.runtimeOf(c).Delete(ctx, c.ID, true),
		m.monitor.Forget(ctx, c.ID),
		m.cfg.Images.RemoveRootfs(ctx, c.ID),
		m.removeImageVolumes(ctx, c),
		os.RemoveAll(m.bundleDir(c.ID)),
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return m.containers.delete(c.ID)
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
