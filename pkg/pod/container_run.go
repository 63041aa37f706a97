package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/monitor"
)

// StartContainer starts a created container's process.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	if _, ok := m.containers.get(id); !ok {
		return notFound("container", id)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	c, _ := m.containers.get(id)
	if c == nil || c.State != ContainerCreated {
		state := ContainerState("removed")
		if c != nil {
			state = c.State
		}
		return fmt.Errorf("container %s is %s, not created: %w", id, state, errdefs.ErrFailedPrecondition)
	}
	if err := m.runtimeOf(c).StartCreated(ctx, id, c.Pid, c.StartTime); err != nil {
		m.containers.update(id, func(c *Container) error {
			if err := c.setState(ContainerExited); err != nil {
				return err
			}
			c.ExitCode, c.Reason, c.Message, c.FinishedAt = 128, "StartError", err.Error(), time.Now()
			return nil
		})
		return fmt.Errorf("start container %s: %w", id, err)
	}
	started := time.Now()
	if err := m.fault("container-started"); err != nil {
		return err
	}
	c, err := m.containers.update(id, func(c *Container) error {
		c.StartedAt = started
		if c.State == ContainerCreated {
			return c.setState(ContainerRunning)
		} else if !c.FinishedAt.IsZero() && c.FinishedAt.Before(started) {
			c.StartedAt = c.FinishedAt // it exited before we could note the start
		}
		return nil
	})
	if err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Started container", "containerID", id)
	m.events.container(c, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return nil
}

// StopContainer sends the stop signal, waits up to timeout seconds, then
// kills. Stopping an unknown or exited container is fine (idempotent per
// api.proto).
func (m *Manager) StopContainer(ctx context.Context, id string, timeout int64) error {
	if _, ok := m.containers.get(id); !ok {
		return nil
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	c, ok := m.containers.get(id)
	if !ok || (c.State != ContainerRunning && c.State != ContainerCreated) {
		return nil
	}
	if timeout > 0 && c.State == ContainerRunning {
		sig := stopSignal(c)
		if err := m.signalContainer(ctx, c, sig); err != nil {
			return err
		}
		if m.exits.wait(ctx, id, time.Duration(timeout)*time.Second) {
			return nil
		}
	}
	if err := m.signalContainer(ctx, c, unix.SIGKILL); err != nil {
		return err
	}
	if !m.sharesPidNamespace(c) {
		// In its own PID namespace, the init's death ends every process.
	} else if err := m.runtimeOf(c).Kill(ctx, id, unix.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
		klog.FromContext(ctx).V(2).Info("Kill remaining processes", "containerID", id, "err", err)
	}
	if !m.exits.wait(ctx, id, 2*time.Minute) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("container %s did not exit after SIGKILL", id)
	}
	return nil
}

func (m *Manager) sharesPidNamespace(c *Container) bool {
	mode := c.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid()
	return mode != runtimeapi.NamespaceMode_CONTAINER
}

// stopSignal is the CRI's stop signal, else the image's, else SIGTERM.
func stopSignal(c *Container) unix.Signal {
	if s := c.Config.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		if sig := unix.SignalNum(strings.TrimPrefix(s.String(), "SIGNAL_")); sig != 0 {
			return sig
		}
	}
	if s := c.StopSignal; s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return unix.Signal(n)
		}
		name := strings.ToUpper(s)
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		if sig := unix.SignalNum(name); sig != 0 {
			return sig
		}
	}
	return unix.SIGTERM
}

// signalContainer signals the container's init (see signalProcess).
func (m *Manager) signalContainer(ctx context.Context, c *Container, sig unix.Signal) error {
	if c.StartTime == 0 {
		// No start time to check a pid against: let the runtime find
		// the process by its own state.
		if err := m.runtimeOf(c).Kill(ctx, c.ID, sig, false); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("signal %v to container %s: %w", sig, c.ID, err)
		}
		return nil
	}
	if err := signalProcess(c.Pid, c.StartTime, sig); err != nil {
		return fmt.Errorf("signal %v to container %s: %w", sig, c.ID, err)
	}
	return nil
}

// signalProcess signals pid through a pidfd after checking that the
// process still has the start time recorded for it, so a recycled pid is
// never hit. A process that is gone, or unknown (no start time), is left
// alone: the runtime's own delete --force finds it by its state.
func signalProcess(pid int, startTime uint64, sig unix.Signal) error {
	if pid <= 0 || startTime == 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	// Checked after opening the pidfd: from here the pidfd pins this
	// process, so the signal reaches the process whose start time matched.
	if processStartTime(pid) != startTime {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// processStartTime is the start time that, with the pid, names a process.
func processStartTime(pid int) uint64 { return monitor.ProcessStartTime(pid) }

// RemoveContainer removes a container, killing it if it still runs.
// Removing an unknown container is fine.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	c, ok := m.containers.get(id)
	if !ok {
		return nil
	}
	if c.State == ContainerRunning || c.State == ContainerCreated {
		if err := m.StopContainer(ctx, id, 0); err != nil {
			return err
		}
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	if c, ok = m.containers.get(id); !ok {
		return nil
	}
	// The runtime's delete (a process, and the cgroups) and the rootfs
	// removal are independent once the process is gone: do them at once.
	runcErr := make(chan error, 1)
	go func() {
		// An unreadable record says nothing of the process: force it down.
		if err := m.runtimeOf(c).Delete(ctx, id, c.State == ContainerUnknown); err != nil {
			runcErr <- fmt.Errorf("delete container %s from the runtime: %w", id, err)
			return
		}
		runcErr <- nil
	}()
	var errs []error
	if c.State == ContainerUnknown {
		// It may still run: its rootfs is busy until the delete killed it.
		errs = append(errs, <-runcErr)
		runcErr <- nil
	}
	if err := m.monitor.Forget(ctx, id); err != nil {
		errs = append(errs, err)
	}
	if err := m.cfg.Images.RemoveRootfs(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("remove rootfs of %s: %w", id, err))
	}
	if err := m.removeImageVolumes(ctx, c); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, <-runcErr)
	// After a reboot the runtime had nothing to delete, but a kernel that
	// kept the cgroup tree (a simulated reboot) still holds the cgroup.
	if sb, ok := m.sandboxes.get(c.SandboxID); ok {
		m.removeCgroup(sb, id)
	}
	if err := os.RemoveAll(m.bundleDir(id)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := m.fault("container-removed-from-runtime"); err != nil {
		return err
	}
	if err := m.containers.delete(id); err != nil {
		return err
	}
	m.names.release(containerName(c.SandboxID, c.Config.GetMetadata()), id)
	m.exits.forget(id)
	m.rates.forget(id)
	klog.FromContext(ctx).V(2).Info("Removed container", "containerID", id)
	m.events.container(c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// Container returns a container record.
func (m *Manager) Container(id string) (*Container, error) {
	if c, ok := m.containers.get(id); ok {
		return c, nil
	}
	return nil, notFound("container", id)
}

// Containers returns every container record.
func (m *Manager) Containers() []*Container { return m.containers.list() }
