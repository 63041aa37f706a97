package pod

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateResources applies new limits to a created or running container and
// records them.
func (m *Manager) UpdateResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	c, ok := m.containers.get(id)
	if !ok {
		return notFound("container", id)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	if c.State != ContainerRunning && c.State != ContainerCreated {
		return fmt.Errorf("container %s is %s: %w", id, c.State, errdefs.ErrFailedPrecondition)
	}
	if res != nil {
		if err := m.runtimeOf(c).Update(ctx, id, linuxResources(res)); err != nil {
			return fmt.Errorf("update resources of %s: %w", id, err)
		}
	}
	_, err := m.containers.update(id, func(c *Container) error { c.Resources = res; return nil })
	return err
}

// ReopenLog has the monitor reopen the log file kubelet just rotated. It
// takes no lock: rotation must not wait behind a slow stop.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, ok := m.containers.get(id)
	if !ok {
		return notFound("container", id)
	}
	if c.State != ContainerRunning {
		return fmt.Errorf("container %s is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	return m.monitor.Reopen(ctx, id)
}

// ImageInUse reports whether any container was created from the image.
func (m *Manager) ImageInUse(imageID string) bool {
	for _, c := range m.containers.list() {
		if c.ImageID == imageID {
			return true
		}
		for _, v := range c.ImageVolumes {
			if v.ImageID == imageID {
				return true
			}
		}
	}
	return false
}
