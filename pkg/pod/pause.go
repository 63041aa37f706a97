package pod

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pause"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// The pause container of a sandbox: what it is (program, rootfs, spec) is
// pkg/pause's; this file picks its rootfs (built-in or the configured pause
// image) and fills in the pod's part of its spec.

// pauseRootfs returns the pause container's rootfs, command and user: the
// built-in pause, or the configured pause image (pulled on first use,
// mounted per sandbox like any container's rootfs).
func (m *Manager) pauseRootfs(ctx context.Context, sb *Sandbox, uns *userNS) (rootfs string, args []string, uid, gid uint32, err error) {
	if m.cfg.PauseImage == "" {
		return m.pauseRoot, pause.Args, pause.UID, pause.UID, nil
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
		args = pause.Args
	}
	rootfs, err = m.prepareRootfs(ctx, sb, uns, img.ID, sb.ID)
	if err != nil {
		return "", nil, 0, 0, err
	}
	id, err := readUserDB(rootfs).resolveUser(img.Config.User)
	if err != nil {
		id = identity{uid: pause.UID, gid: pause.UID}
	}
	return rootfs, args, id.uid, id.gid, nil
}

// pauseSpec is the pause container's spec for sb (pause.Spec), in the pod's
// cgroup with the pod's resources.
func (m *Manager) pauseSpec(ctx context.Context, sb *Sandbox) (*specs.Spec, error) {
	cfg := sb.Config
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	uns := sandboxUserNS(sb)
	rootfs, args, uid, gid, err := m.pauseRootfs(ctx, sb, uns)
	if err != nil {
		return nil, err
	}
	if uns != nil && !uns.maps(uid) {
		// A short mapping without the pause's user: its root is as
		// unprivileged on the host.
		uid, gid = 0, 0
	}
	extra := []runtime.SpecOpt{withCgroup(sb.cgroup(sb.ID))}
	if res := cfg.GetLinux().GetResources(); res != nil {
		extra = append(extra, runtime.WithResources(linuxResources(res)))
	}
	return pause.Spec(pause.Config{
		SandboxID: sb.ID, Rootfs: rootfs, Args: args, UID: uid, GID: gid,
		NetNS: sb.NetNS, HostNetwork: ns.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		HostIPC: ns.GetIpc() == runtimeapi.NamespaceMode_NODE, HostPID: ns.GetPid() == runtimeapi.NamespaceMode_NODE,
		Hostname: cfg.GetHostname(), Sysctls: cfg.GetLinux().GetSysctls(), UserNS: sb.UserNS, Extra: extra,
	})
}
