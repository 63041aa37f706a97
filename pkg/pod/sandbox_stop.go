package pod

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// StopPod stops every container of the sandbox, the pause container, and
// releases the network. Per api.proto it is idempotent: an unknown or
// already stopped sandbox is fine, and a failed part is retried by the
// next call.
func (m *Manager) StopPod(ctx context.Context, id string) error {
	sb, ok := m.sandboxes.get(id)
	if !ok {
		return nil
	}
	logger := klog.FromContext(ctx).WithValues("podSandboxID", id)
	// Held from the listing of the pod's containers on: CreateContainer
	// takes it too, so no container joins the pod behind the listing.
	unlock := m.locks.Lock(id)
	defer unlock()
	for _, c := range m.containers.list() {
		if c.SandboxID == id {
			if err := m.StopContainer(ctx, c.ID, 0); err != nil {
				return err
			}
		}
	}
	if err := m.fault("stop-containers-stopped"); err != nil {
		return err
	}
	if sb, ok = m.sandboxes.get(id); !ok {
		return nil
	}

	// The pause container and the network go down in parallel; both
	// tolerate being gone.
	netc := make(chan error, 1)
	go func() {
		if !sb.CNIAdded {
			netc <- nil
			return
		}
		netc <- m.network.teardown(ctx, sb)
	}()
	pauseErr := m.removePause(ctx, id, sb.Handler, sb.PausePid, sb.PauseStartTime)
	netErr := <-netc
	if netErr != nil {
		// Keep the netns: the next Stop retries DEL with it.
		return errors.Join(netErr, pauseErr)
	}
	if err := m.fault("stop-network-down"); err != nil {
		return err
	}
	var errs []error
	errs = append(errs, pauseErr)
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
	updated, err := m.sandboxes.update(id, func(s *Sandbox) error {
		s.CNIAdded, s.PausePid, s.PauseStartTime = false, 0, 0
		return s.setState(SandboxNotReady)
	})
	if err != nil {
		return err
	}
	if sb.State == SandboxReady {
		logger.V(2).Info("Stopped pod sandbox")
		m.events.sandbox(updated, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	return nil
}

// RemovePod removes the sandbox and all its containers, stopping what
// still runs. Unknown IDs are fine (idempotent per api.proto).
func (m *Manager) RemovePod(ctx context.Context, id string) error {
	sb, ok := m.sandboxes.get(id)
	if !ok {
		return nil
	}
	if err := m.StopPod(ctx, id); err != nil {
		return err
	}
	for _, c := range m.containers.list() {
		if c.SandboxID == id {
			if err := m.RemoveContainer(ctx, c.ID); err != nil {
				return err
			}
		}
	}
	if err := m.fault("remove-containers-removed"); err != nil {
		return err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	if err := m.sandboxes.delete(id); err != nil {
		return err
	}
	if sb.Config != nil {
		m.names.release(podName(sb.Config.GetMetadata()), id)
	}
	m.exits.forget(id)
	m.rates.forget("pod:" + id)
	klog.FromContext(ctx).V(2).Info("Removed pod sandbox", "podSandboxID", id)
	m.events.sandbox(sb, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// Pod returns a sandbox record.
func (m *Manager) Pod(id string) (*Sandbox, error) {
	if sb, ok := m.sandboxes.get(id); ok {
		return sb, nil
	}
	return nil, notFound("pod sandbox", id)
}

// Pods returns every sandbox record.
func (m *Manager) Pods() []*Sandbox { return m.sandboxes.list() }
