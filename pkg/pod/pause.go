package pod

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// The built-in pause container: the pause program (cmd/cri-shim-pause, a
// few KiB of C without libc) alone in a read-only rootfs, so a pod needs no
// registry and no image.

// pauseUID is the unprivileged user the pause process runs as (what the
// upstream pause image declares).
const pauseUID = 65535

// preparePauseRootfs copies the pause binary into dir/rootfs once.
func preparePauseRootfs(dir, binary string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	dst := filepath.Join(rootfs, "pause")
	if st, err := os.Stat(dst); err == nil && st.Size() > 0 {
		if src, err := os.Stat(binary); err == nil && src.Size() == st.Size() {
			return rootfs, nil
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	in, err := os.Open(binary)
	if err != nil {
		return "", fmt.Errorf("pause program: %w", err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return "", fmt.Errorf("install pause program: %w", err)
	}
	return rootfs, nil
}

// pauseRootfs returns the pause container's rootfs, command and user: the
// built-in pause, or the configured pause image (pulled on first use,
// mounted per sandbox like any container's rootfs).
func (m *Manager) pauseRootfs(ctx context.Context, sb *Sandbox) (rootfs string, args []string, uid, gid uint32, err error) {
	if m.cfg.PauseImage == "" {
		return m.pauseRoot, []string{"/pause"}, pauseUID, pauseUID, nil
	}
	img, err := m.cfg.Images.Get(m.cfg.PauseImage)
	if errdefs.IsNotFound(err) {
		img, err = m.cfg.Images.Pull(ctx, m.cfg.PauseImage, nil)
	}
	if err != nil {
		return "", nil, 0, 0, fmt.Errorf("pause image %s: %w", m.cfg.PauseImage, err)
	}
	args = append(slices.Clone(img.Config.Entrypoint), img.Config.Cmd...)
	if len(args) == 0 {
		args = []string{"/pause"}
	}
	rootfs, err = m.cfg.Images.PrepareRootfs(ctx, img.ID, sb.ID)
	if err != nil {
		return "", nil, 0, 0, err
	}
	id, err := readUserDB(rootfs).resolveUser(img.Config.User)
	if err != nil {
		id = identity{uid: pauseUID, gid: pauseUID}
	}
	return rootfs, args, id.uid, id.gid, nil
}

// pauseSpec is the pause container's spec: it owns the pod's network (a
// pinned netns, or the host's), IPC, UTS and, with a pod-wide PID
// namespace, PID namespaces.
func (m *Manager) pauseSpec(ctx context.Context, sb *Sandbox) (*specs.Spec, error) {
	cfg := sb.Config
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	rootfs, args, uid, gid, err := m.pauseRootfs(ctx, sb)
	if err != nil {
		return nil, err
	}
	opts := []runtime.SpecOpt{
		runtime.WithRootfs(rootfs, true),
		runtime.WithArgs(args...),
		runtime.WithUser(uid, gid, nil),
		runtime.WithCapabilities(nil),
		runtime.WithNoNewPrivileges(true),
		runtime.WithOOMScoreAdj(-998, true),
		withCgroup(sb.cgroup(sb.ID)),
		runtime.WithSysctl(cfg.GetLinux().GetSysctls()),
		runtime.WithAnnotations(map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": sb.ID}),
	}
	if ns.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, runtime.WithoutNamespace(specs.NetworkNamespace), runtime.WithoutNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, runtime.WithNamespace(specs.NetworkNamespace, sb.NetNS), runtime.WithHostname(cfg.GetHostname()))
	}
	if ns.GetIpc() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, runtime.WithoutNamespace(specs.IPCNamespace))
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, runtime.WithoutNamespace(specs.PIDNamespace))
	}
	if res := cfg.GetLinux().GetResources(); res != nil {
		opts = append(opts, runtime.WithResources(linuxResources(res)))
	}
	return runtime.NewSpec(opts...)
}
