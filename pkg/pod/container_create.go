package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/monitor"
)

// containerName is the CRI name of a container within its sandbox.
func containerName(sandboxID string, md *runtimeapi.ContainerMetadata) string {
	return fmt.Sprintf("%s_%s_%d", sandboxID, md.GetName(), md.GetAttempt())
}

// CreateContainer creates a container in a ready sandbox; its process waits
// for StartContainer. On failure everything made so far is undone.
func (m *Manager) CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig) (_ string, retErr error) {
	// The sandbox stays Ready until the container is recorded: StopPod
	// holds the same lock while it lists and stops the pod's containers,
	// so a container is either in its list or refused here (lock order:
	// sandbox, then container).
	took := newPhases(klog.FromContext(ctx).V(2).Enabled())
	unlockSandbox := m.locks.Lock(sandboxID)
	defer unlockSandbox()
	sb, img, targetPid, err := m.containerPrerequisites(sandboxID, cfg)
	if err != nil {
		return "", err
	}
	uns := sandboxUserNS(sb)
	if err := checkContainerUserNS(uns, cfg); err != nil {
		return "", err
	}

	id := newID()
	name := containerName(sandboxID, cfg.GetMetadata())
	if holder, ok := m.names.reserve(name, id); !ok {
		return "", fmt.Errorf("container name %q is in use by %s: %w", name, holder, errdefs.ErrAlreadyExists)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	logger := klog.FromContext(ctx).WithValues("containerID", id, "podSandboxID", sandboxID, "name", cfg.GetMetadata().GetName())
	var u undo
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, u.run(logger))
		}
	}()
	u.add("release name", func(context.Context) error { m.names.release(name, id); return nil })

	c := &Container{Version: containerVersion, ID: id, SandboxID: sandboxID, State: ContainerCreating, Config: cfg,
		ImageID: img.ID, ImageRef: cfg.GetImage().GetImage(), CreatedAt: time.Now(), StopSignal: img.Config.StopSignal,
		Resources: cfg.GetLinux().GetResources(), Handler: sb.Handler}
	if cfg.GetLogPath() != "" && sb.Config.GetLogDirectory() != "" {
		c.LogPath = filepath.Join(sb.Config.GetLogDirectory(), cfg.GetLogPath())
	}
	if c.ImageVolumes, err = m.imageVolumes(id, cfg); err != nil {
		return "", err
	}
	took.done("check")
	if err := m.containers.put(id, c); err != nil {
		return "", err
	}
	took.done("record")
	u.add("delete record", func(context.Context) error { return m.containers.delete(id) })
	if err := m.fault("container-recorded"); err != nil {
		return "", err
	}

	rootfs, err := m.prepareRootfs(ctx, sb, uns, img.ID, id)
	if err != nil {
		return "", fmt.Errorf("prepare the rootfs of %s: %w", id, err)
	}
	took.done("rootfs")
	u.add("remove rootfs", func(ctx context.Context) error { return m.cfg.Images.RemoveRootfs(ctx, id) })
	if err := m.fault("rootfs-prepared"); err != nil {
		return "", err
	}

	volumes, err := m.mountImageVolumes(ctx, c.ImageVolumes, &u)
	if err != nil {
		return "", err
	}
	bundle := m.bundleDir(id)
	u.add("remove bundle", func(context.Context) error { return os.RemoveAll(bundle) }) // also a half-written one
	ident, groups, err := m.writeContainerBundle(ctx, specInput{id: id, sb: sb, userns: uns, cfg: cfg, img: img, rootfs: rootfs,
		podFiles: m.podFilesDir(sandboxID), users: readUserDB(rootfs), targetPid: targetPid, imageVolumes: volumes,
		criuConfig: m.criuConfigPath(id)})
	if err != nil {
		return "", err
	}
	took.done("bundle")

	rt := m.runtimeOf(c)
	req := monitor.CreateRequest{ID: id, Bundle: bundle, RuntimeBinary: rt.Binary, RuntimeRoot: rt.Root,
		Terminal: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
		SystemdCgroup: rt.SystemdCgroup, CgroupDir: memoryCgroupDir(sb.cgroup(id))}
	if c.LogPath != "" {
		req.LogDir, req.LogPath = sb.Config.GetLogDirectory(), cfg.GetLogPath()
	}
	u.add("delete from runtime", func(ctx context.Context) error {
		return errors.Join(rt.Delete(ctx, id, true), m.monitor.Forget(ctx, id))
	})
	pid, err := m.monitor.Create(ctx, req)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	took.done("runtime")
	m.exits.track(id)
	u.add("stop tracking", func(context.Context) error { m.exits.forget(id); return nil })
	if err := m.fault("container-created"); err != nil {
		return "", err
	}
	startTime := processStartTime(pid)
	c, err = m.containers.update(id, func(c *Container) error {
		c.Pid, c.StartTime = pid, startTime
		c.User = &ContainerUser{UID: ident.uid, GID: ident.gid, Groups: groups}
		if c.State == ContainerCreating {
			return c.setState(ContainerCreated)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	u.steps = nil
	took.done("state")
	logger.V(2).Info("Created container", took.keysAndValues()...)
	m.events.container(c, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return id, nil
}

// writeContainerBundle resolves what the container's OCI spec needs beyond
// in (devices, seccomp and AppArmor profiles), composes the spec with the
// edits of its CDI devices, creates
// missing mount sources and writes the bundle. It returns the identity the
// process runs as.
func (m *Manager) writeContainerBundle(ctx context.Context, in specInput) (*identity, []uint32, error) {
	cfg := in.cfg
	sc := cfg.GetLinux().GetSecurityContext()
	var err error
	if in.devices, err = resolveDevices(cfg.GetDevices()); err != nil {
		return nil, nil, err
	}
	if in.seccomp, err = seccompProfile(sc, capabilities(sc.GetCapabilities())); err != nil {
		return nil, nil, err
	}
	if in.apparmor, err = apparmorProfile(ctx, sc, m.apparmor); err != nil {
		return nil, nil, err
	}
	spec, ident, groups, err := containerSpec(in)
	if err != nil {
		return nil, nil, err
	}
	if err := m.injectCDI(spec, cfg); err != nil {
		return nil, nil, err
	}
	for _, mnt := range cfg.GetMounts() {
		if mnt.GetImage().GetImage() != "" {
			continue // an image volume: no host path
		}
		// A missing host path is created as a directory, as kubelet's
		// hostPath DirectoryOrCreate and every runtime do.
		if _, err := os.Stat(mnt.GetHostPath()); os.IsNotExist(err) {
			if err := os.MkdirAll(mnt.GetHostPath(), 0o755); err != nil {
				return nil, nil, fmt.Errorf("create mount source %s: %w", mnt.GetHostPath(), err)
			}
		}
	}
	if err := writeBundle(m.bundleDir(in.id), spec); err != nil {
		return nil, nil, err
	}
	return ident, groups, nil
}

// containerPrerequisites checks what CreateContainer needs before it makes
// anything, with the sandbox locked: a ready sandbox whose pause process is
// still the one it started, an allowed security context, the image, and
// the target of a TARGET PID namespace (its pid).
func (m *Manager) containerPrerequisites(sandboxID string, cfg *runtimeapi.ContainerConfig) (*Sandbox, *image.Image, int, error) {
	sb, ok := m.sandboxes.get(sandboxID)
	if !ok {
		return nil, nil, 0, notFound("pod sandbox", sandboxID)
	}
	if sb.State != SandboxReady {
		return nil, nil, 0, fmt.Errorf("pod sandbox %s is %s, not ready: %w", sandboxID, sb.State, errdefs.ErrFailedPrecondition)
	}
	// The container joins namespaces through /proc/<pause pid>: that pid
	// must still be the pause process, not a process that reused it.
	if processStartTime(sb.PausePid) != sb.PauseStartTime {
		return nil, nil, 0, fmt.Errorf("the pause process of pod sandbox %s is gone: %w", sandboxID, errdefs.ErrFailedPrecondition)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() && !sb.Config.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, nil, 0, invalid("privileged container %q in a sandbox that is not privileged", cfg.GetMetadata().GetName())
	}
	img, err := m.cfg.Images.Get(cfg.GetImage().GetImage())
	if err != nil {
		return nil, nil, 0, fmt.Errorf("image %q of container %q: %w", cfg.GetImage().GetImage(), cfg.GetMetadata().GetName(), err)
	}
	var targetPid int
	if sc.GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, ok := m.containers.get(sc.GetNamespaceOptions().GetTargetId())
		if !ok || target.State != ContainerRunning {
			return nil, nil, 0, fmt.Errorf("target container %q of the PID namespace is not running: %w", sc.GetNamespaceOptions().GetTargetId(), errdefs.ErrNotFound)
		}
		targetPid = target.Pid
	}
	return sb, img, targetPid, nil
}
