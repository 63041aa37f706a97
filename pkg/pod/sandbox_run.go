package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/monitor"
	"golang.org/x/sys/unix"
)

// podName is the CRI name of a sandbox: what kubelet retries with.
func podName(md *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", md.GetName(), md.GetNamespace(), md.GetUid(), md.GetAttempt())
}

// RunPod creates a ready sandbox and returns its ID. A retry of a sandbox
// that is already ready (kubelet timed out and asked again) returns the
// same ID. On failure everything made so far is undone.
func (m *Manager) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (_ string, retErr error) {
	took := newPhases(klog.FromContext(ctx).V(2).Enabled())
	md := cfg.GetMetadata()
	name := podName(md)
	id := newID()
	logger := klog.FromContext(ctx).WithValues("podSandboxID", id, "pod", klog.KRef(md.GetNamespace(), md.GetName()))

	if holder, ok := m.names.reserve(name, id); !ok {
		if sb, found := m.sandboxes.get(holder); found && sb.State == SandboxReady {
			return holder, nil
		}
		return "", fmt.Errorf("pod sandbox name %q is in use by %s: %w", name, holder, errdefs.ErrAlreadyExists)
	}
	unlock := m.locks.Lock(id)
	defer unlock()

	var u undo
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, u.run(logger))
		}
	}()
	u.add("release name", func(context.Context) error { m.names.release(name, id); return nil })

	sb := &Sandbox{Version: sandboxVersion, ID: id, State: SandboxCreating, Config: cfg, Handler: handler,
		CreatedAt: time.Now(), Cgroup: cfg.GetLinux().GetCgroupParent(), CgroupDriver: m.cfg.CgroupDriver}
	if err := sb.cgroup(id).Validate(); err != nil {
		return "", invalid("%v", err)
	}
	uns, err := podUserNS(cfg)
	if err != nil {
		return "", err
	}
	if uns != nil {
		if err := m.userNSSupport(m.runtimeFor(handler)); err != nil {
			return "", fmt.Errorf("runtime handler %q cannot run a pod with a user namespace: %w: %w", handler, err, errdefs.ErrFailedPrecondition)
		}
		sb.UserNS = filepath.Join(m.usernsDir(), id)
	}
	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		sb.NetNS = filepath.Join(m.netnsDir(), id)
		sb.CNIAdded = true // intent: recovery runs DEL for a half-made pod
	}
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() != runtimeapi.NamespaceMode_NODE {
		sb.ShmPath = filepath.Join(m.cfg.State, "shm", id)
	}
	// The intent is on disk before the first side effect.
	took.done("check")
	if err := m.sandboxes.put(id, sb); err != nil {
		return "", err
	}
	took.done("record")
	u.add("delete record", func(context.Context) error { return m.sandboxes.delete(id) })
	if err := m.fault("sandbox-recorded"); err != nil {
		return "", err
	}

	if err := m.writePodFiles(sb); err != nil {
		return "", err
	}
	if dir := cfg.GetLogDirectory(); dir != "" {
		// kubelet expects the runtime to create the pod's log directory.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create the pod log directory: %w", err)
		}
	}
	if sb.ShmPath != "" {
		if err := mountShm(sb.ShmPath, shmSize(cfg)); err != nil {
			return "", err
		}
		u.add("unmount /dev/shm", func(context.Context) error { return unmountShm(sb.ShmPath) })
	}

	took.done("files")
	if !hostNet {
		if err := m.makePodNamespaces(sb, uns, &u); err != nil {
			return "", err
		}
		took.done("namespaces")
		if err := m.fault("netns-created"); err != nil {
			return "", err
		}
	}

	ips, pid, pauseStart, err := m.startNetworkAndPause(ctx, sb, hostNet, &u, took)
	if err != nil {
		return "", err
	}
	took.done("network and pause")

	sb, err = m.sandboxes.update(id, func(s *Sandbox) error {
		s.IPs, s.PausePid, s.PauseStartTime = ips, pid, pauseStart
		return s.setState(SandboxReady)
	})
	if err != nil {
		return "", err
	}
	u.steps = nil
	if err := m.fault("sandbox-ready"); err != nil {
		return "", err
	}
	took.done("state")
	logger.V(2).Info("Started pod sandbox", append([]any{"ips", sb.IPs}, took.keysAndValues()...)...)
	m.events.sandbox(sb, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return id, nil
}

// startNetworkAndPause attaches the pod network (CNI ADD) and starts the
// pause container, pushing their undo steps on u. They do not depend on
// each other (the pause joins the pinned netns, configured or not), so they
// run at once. took gets the time of each.
func (m *Manager) startNetworkAndPause(ctx context.Context, sb *Sandbox, hostNet bool, u *undo, took *phases) (ips []string, pid int, pauseStart uint64, err error) {
	type netResult struct {
		ips []string
		err error
		d   time.Duration
	}
	netc := make(chan netResult, 1)
	if hostNet {
		netc <- netResult{}
	} else {
		u.add("detach network", func(ctx context.Context) error { return m.network.teardown(ctx, sb) })
		go func() {
			start := time.Now()
			ips, err := m.network.setup(ctx, sb)
			if err == nil {
				err = m.fault("cni-added")
			}
			netc <- netResult{ips, err, time.Since(start)}
		}()
	}

	pauseBegan := time.Now()
	pid, pauseErr := m.startPause(ctx, sb)
	took.add("pause", time.Since(pauseBegan))
	pauseStart = processStartTime(pid)
	if pid > 0 || errors.Is(pauseErr, errPauseMayExist) {
		u.add("remove pause container", func(ctx context.Context) error { return m.removePause(ctx, sb.ID, sb.Handler, pid, pauseStart) })
	}
	nr := <-netc
	took.add("cni", nr.d)
	if err := errors.Join(nr.err, pauseErr); err != nil {
		return nil, 0, 0, err
	}
	return nr.ips, pid, pauseStart, nil
}

var errPauseMayExist = errors.New("pause container may exist")

// startPause creates and starts the pause container through the monitor.
func (m *Manager) startPause(ctx context.Context, sb *Sandbox) (int, error) {
	spec, err := m.pauseSpec(ctx, sb)
	if err != nil {
		// The pause image's rootfs may have been prepared.
		return 0, fmt.Errorf("%w: %w", errPauseMayExist, err)
	}
	bundle := m.bundleDir(sb.ID)
	if err := writeBundle(bundle, spec); err != nil {
		return 0, err
	}
	if err := m.fault("pause-bundle"); err != nil {
		return 0, fmt.Errorf("%w: %w", errPauseMayExist, err)
	}
	rt := m.runtimeFor(sb.Handler)
	pid, err := m.monitor.Create(ctx, monitor.CreateRequest{
		ID: sb.ID, Bundle: bundle, RuntimeBinary: rt.Binary, RuntimeRoot: rt.Root, Run: true,
		SystemdCgroup: rt.SystemdCgroup, CgroupDir: memoryCgroupDir(sb.cgroup(sb.ID)),
	})
	if err != nil {
		return 0, fmt.Errorf("%w: start pause container: %w", errPauseMayExist, err)
	}
	m.exits.track(sb.ID)
	if err := m.fault("pause-started"); err != nil {
		return pid, err
	}
	return pid, nil
}

// removePause kills the pause process and deletes the container from the
// runtime and the monitor; each part tolerates it being gone.
func (m *Manager) removePause(ctx context.Context, id, handler string, pid int, startTime uint64) error {
	var errs []error
	if pid > 0 && m.alive(id) {
		if err := signalProcess(pid, startTime, unix.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("kill pause of %s: %w", id, err))
		}
		m.exits.wait(ctx, id, 10*time.Second)
	}
	if err := m.runtimeFor(handler).Delete(ctx, id, true); err != nil {
		errs = append(errs, fmt.Errorf("delete pause container: %w", err))
	}
	if sb, ok := m.sandboxes.get(id); ok {
		m.removeCgroup(sb, id)
	}
	if err := m.monitor.Forget(ctx, id); err != nil {
		errs = append(errs, err)
	}
	m.exits.forget(id)
	if err := os.RemoveAll(m.bundleDir(id)); err != nil {
		errs = append(errs, err)
	}
	if m.cfg.PauseImage != "" {
		if err := m.cfg.Images.RemoveRootfs(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writePodFiles writes the files the pod's containers get bind-mounted:
// hostname, hosts and resolv.conf.
func (m *Manager) writePodFiles(sb *Sandbox) error {
	dir := m.podFilesDir(sb.ID)
	cfg := sb.Config
	hostname := cfg.GetHostname()
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		hostname, _ = os.Hostname()
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	files := map[string]string{"hostname": hostname + "\n", "hosts": hosts}
	if dns := cfg.GetDnsConfig(); dns != nil && (len(dns.GetServers()) > 0 || len(dns.GetSearches()) > 0 || len(dns.GetOptions()) > 0) {
		var b strings.Builder
		if len(dns.GetSearches()) > 0 {
			b.WriteString("search " + strings.Join(dns.GetSearches(), " ") + "\n")
		}
		for _, s := range dns.GetServers() {
			b.WriteString("nameserver " + s + "\n")
		}
		if len(dns.GetOptions()) > 0 {
			b.WriteString("options " + strings.Join(dns.GetOptions(), " ") + "\n")
		}
		files["resolv.conf"] = b.String()
	} else {
		host, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("read the host's resolv.conf: %w", err)
		}
		files["resolv.conf"] = string(host)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write pod file %s: %w", name, err)
		}
	}
	return nil
}

// shmSize is the pod's /dev/shm size: 64 MiB, like every runtime.
func shmSize(*runtimeapi.PodSandboxConfig) int { return 64 << 20 }

func mountShm(path string, size int) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=1777,size=%d", size)); err != nil {
		os.Remove(path)
		return fmt.Errorf("mount the pod's /dev/shm: %w", err)
	}
	return nil
}

func unmountShm(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
