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
// never fatal. Half-made objects (state Creating) are undone. After a
// reboot (the runtime's state under --state is gone) every container is
// exited, every sandbox NotReady and its network released.
func (m *Manager) recover(ctx context.Context) {
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
			if p := filepath.Join(m.cfg.State, "shm", id); dirExists(p) {
				sb.ShmPath = p
			}
			m.sandboxes.remember(id, sb)
			continue
		}
		m.sandboxes.remember(id, sb)
		if sb.State == SandboxCreating {
			logger.Info("Undoing a sandbox left half made", "podSandboxID", id)
			if err := m.undoSandbox(ctx, sb); err != nil {
				logger.Error(err, "Undo half-made sandbox", "podSandboxID", id)
			}
			continue
		}
		m.names.reserve(podName(sb.Config.GetMetadata()), id)
		if sb.State == SandboxReady && !m.runc.Exists(id) {
			// Rebooted (or the pause was deleted behind our back): the
			// pod's namespaces are gone.
			m.sandboxes.update(id, func(s *Sandbox) error { s.State = SandboxNotReady; return nil })
			m.removeCgroup(sb.Cgroup, id)
		}
		if m.runc.Exists(id) {
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
		if c.State == ContainerExited {
			continue
		}
		if e, err := m.monitor.ReadExit(id); err == nil && e != nil {
			m.handleExit(ctx, *e)
			continue
		}
		if !m.runc.Exists(id) {
			// Rebooted: the process is gone, the kernel may keep an empty
			// cgroup (a simulated reboot does).
			m.handleExit(ctx, monitor.Exit{ID: id, ExitCode: 255, FinishedAt: time.Now(), Reason: "Unknown"})
			if sb, ok := m.sandboxes.get(c.SandboxID); ok {
				m.removeCgroup(sb.Cgroup, id)
			}
			continue
		}
		m.exits.track(id)
		if c.State == ContainerCreated {
			// A crash between runc start and recording it.
			if st, err := m.runc.State(ctx, id); err == nil && st.Status == "running" {
				m.containers.update(id, func(c *Container) error {
					if c.State == ContainerCreated {
						c.State, c.StartedAt = ContainerRunning, time.Now()
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
			if err := m.StopPod(ctx, sb.ID); err != nil {
				logger.Error(err, "Release the network of a stopped sandbox", "podSandboxID", sb.ID)
			}
		}
	}
	m.collectNetwork(ctx)
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
	errs = append(errs, m.removePause(ctx, sb.ID, sb.PausePid, sb.PauseStartTime))
	if sb.CNIAdded {
		errs = append(errs, m.network.teardown(ctx, sb))
	}
	if sb.NetNS != "" {
		errs = append(errs, netns.Remove(sb.NetNS))
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
		m.runc.Delete(ctx, c.ID, true),
		m.monitor.Forget(ctx, c.ID),
		m.cfg.Images.RemoveRootfs(ctx, c.ID),
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
