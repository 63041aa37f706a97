package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/netns"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// User namespaces (KEP-127, hostUsers: false). A pod in POD mode gets one
// user namespace with the kubelet's mappings, pinned like its network
// namespace, which it owns (netns.NewInUserNS); the pause and every
// container join it. The containers' rootfs layers are idmapped mounts
// (image.IDMap), the pod's files and the volumes kubelet gives mappings to
// are idmapped bind mounts (the OCI runtime makes them), so root in the pod
// owns what root owns in the image and on the node, while on the host it is
// the unprivileged hostID.

// userNS is a pod's user namespace: one UID and one GID mapping, each
// mapping container ID 0 (what kubelet sends and the CRI allows).
type userNS struct {
	uids, gids []specs.LinuxIDMapping
}

// rootUID and rootGID are the host IDs of the pod's root.
func (u *userNS) rootUID() uint32 { return u.uids[0].HostID }
func (u *userNS) rootGID() uint32 { return u.gids[0].HostID }

// maps reports whether container ID id is mapped for both UIDs and GIDs.
func (u *userNS) maps(id uint32) bool {
	in := func(ms []specs.LinuxIDMapping) bool {
		return slices.ContainsFunc(ms, func(m specs.LinuxIDMapping) bool { return id >= m.ContainerID && id-m.ContainerID < m.Size })
	}
	return in(u.uids) && in(u.gids)
}

func (u *userNS) sysProcIDMaps() (uids, gids []syscall.SysProcIDMap) {
	conv := func(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
		out := make([]syscall.SysProcIDMap, len(ms))
		for i, m := range ms {
			out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
		}
		return out
	}
	return conv(u.uids), conv(u.gids)
}

// podUserNS validates the pod's user namespace options and returns its user
// namespace, nil for the host's. Errors are InvalidArgument, with the CRI's
// rules: NODE takes no mappings; POD exactly one UID and one GID mapping
// that map container ID 0; CONTAINER and TARGET do not exist for user
// namespaces (a pod's containers share one). A user namespace needs the
// pod's own network, PID and IPC namespaces (kubelet's rule too): a
// container root with capabilities in a host namespace it cannot own is
// neither safe nor workable.
func podUserNS(cfg *runtimeapi.PodSandboxConfig) (*userNS, error) {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	opts := ns.GetUsernsOptions()
	if opts == nil {
		// Not POD, the zero mode: kubelets before KEP-127 send nothing.
		return nil, nil
	}
	switch opts.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(opts.GetUids()) > 0 || len(opts.GetGids()) > 0 {
			return nil, invalid("user namespace mode NODE (the host's) takes no ID mappings, got %d UID and %d GID mappings",
				len(opts.GetUids()), len(opts.GetGids()))
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	case runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET:
		return nil, invalid("user namespace mode %s is not supported: the containers of a pod share its user namespace (mode POD) or the host's (NODE)", opts.GetMode())
	default:
		return nil, invalid("unknown user namespace mode %d", opts.GetMode())
	}
	if len(opts.GetUids()) != 1 || len(opts.GetGids()) != 1 {
		return nil, invalid("a pod's user namespace takes exactly one UID and one GID mapping, got %d and %d",
			len(opts.GetUids()), len(opts.GetGids()))
	}
	u := &userNS{}
	for _, set := range []struct {
		kind string
		in   []*runtimeapi.IDMapping
		out  *[]specs.LinuxIDMapping
	}{{"UID", opts.GetUids(), &u.uids}, {"GID", opts.GetGids(), &u.gids}} {
		if id := set.in[0].GetContainerId(); id != 0 {
			return nil, invalid("the %s mapping must map container ID 0 (root), it starts at %d", set.kind, id)
		}
		sm, err := specIDMapping(set.in[0])
		if err != nil {
			return nil, invalid("the %s mapping: %v", set.kind, err)
		}
		*set.out = []specs.LinuxIDMapping{sm}
	}
	for name, mode := range map[string]runtimeapi.NamespaceMode{"network": ns.GetNetwork(), "PID": ns.GetPid(), "IPC": ns.GetIpc()} {
		if mode == runtimeapi.NamespaceMode_NODE {
			return nil, invalid("a pod with its own user namespace cannot use the host's %s namespace", name)
		}
	}
	return u, nil
}

// checkContainerUserNS: a container's user namespace options, when given,
// must be the pod's (kubelet copies them); nothing else can be honoured.
func checkContainerUserNS(pod *userNS, cfg *runtimeapi.ContainerConfig) error {
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if opts == nil {
		return nil
	}
	switch opts.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if pod != nil {
			return invalid("the container asks for the host's user namespace in a pod with its own")
		}
		return nil
	case runtimeapi.NamespaceMode_POD:
		if pod == nil {
			return invalid("the container asks for the pod's user namespace, but the pod has none (it uses the host's)")
		}
	default:
		return invalid("user namespace mode %s is not supported for a container: it shares the pod's", opts.GetMode())
	}
	same := func(in []*runtimeapi.IDMapping, want []specs.LinuxIDMapping) bool {
		return len(in) == 0 || len(in) == 1 && in[0].GetContainerId() == want[0].ContainerID &&
			in[0].GetHostId() == want[0].HostID && in[0].GetLength() == want[0].Size
	}
	if !same(opts.GetUids(), pod.uids) || !same(opts.GetGids(), pod.gids) {
		return invalid("the container's user namespace mappings differ from its pod's")
	}
	return nil
}

// sandboxUserNS is the user namespace of a sandbox's pod (nil: the host's).
// Its options were validated by RunPod.
func sandboxUserNS(sb *Sandbox) *userNS {
	if sb.UserNS == "" {
		return nil
	}
	u, err := podUserNS(sb.Config)
	if err != nil || u == nil {
		return nil
	}
	return u
}

func (m *Manager) usernsDir() string { return filepath.Join(m.cfg.State, "userns") }

// probeUserNS finds out, once at start, whether pods can get a user
// namespace: the kernel must idmap mounts on the filesystem of the
// container layers. Per runtime, it must also join user namespaces and
// make idmapped mounts (its features); see userNSSupport.
func (m *Manager) probeUserNS(ctx context.Context) error {
	dir := m.cfg.ImageFsMountpoint
	if dir == "" {
		dir = m.cfg.Root
	}
	id := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1 << 30, Size: 65536}}
	cmd, err := netns.StartInUserNS([]string{m.cfg.PauseBinary}, 0, id, id)
	if err != nil {
		return err
	}
	defer netns.StopHolder(cmd)
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := image.CheckIDMapped(dir, int(f.Fd())); err != nil {
		return fmt.Errorf("the image filesystem (%s) takes no idmapped mounts: %w", dir, err)
	}
	klog.FromContext(ctx).V(2).Info("Idmapped mounts work on the image filesystem", "path", dir)
	return nil
}

// userNSSupport says why a handler's pods cannot have a user namespace
// (nil: they can).
func (m *Manager) userNSSupport(r *runtime.Runc) error {
	if m.usernsErr != nil {
		return m.usernsErr
	}
	f := m.features[r]
	if f == nil {
		return fmt.Errorf("%s does not report its features", r.Binary)
	}
	if !f.HasNamespace(specs.UserNamespace) || !f.IDMappedMounts() {
		return fmt.Errorf("%s cannot make idmapped mounts (runc >= 1.2 or crun >= 1.9 can)", r.Binary)
	}
	return nil
}

// makePodNamespaces creates the pod's network namespace, owned by its user
// namespace when it has one, and pushes their removal on u.
func (m *Manager) makePodNamespaces(sb *Sandbox, uns *userNS, u *undo) error {
	if uns == nil {
		if err := netns.New(sb.NetNS); err != nil {
			return fmt.Errorf("create network namespace: %w", err)
		}
		u.add("remove network namespace", func(context.Context) error { return netns.Remove(sb.NetNS) })
		return nil
	}
	uids, gids := uns.sysProcIDMaps()
	if err := netns.NewInUserNS(sb.NetNS, sb.UserNS, []string{m.cfg.PauseBinary}, uids, gids); err != nil {
		return fmt.Errorf("create the pod's user and network namespaces: %w", err)
	}
	u.add("remove network and user namespaces", func(context.Context) error {
		return errors.Join(netns.Remove(sb.NetNS), netns.Remove(sb.UserNS))
	})
	return nil
}

// prepareRootfs prepares the rootfs key of a container of sb: idmapped
// through the pod's user namespace uns when it has one.
func (m *Manager) prepareRootfs(ctx context.Context, sb *Sandbox, uns *userNS, imageID, key string) (string, error) {
	if uns == nil {
		return m.cfg.Images.PrepareRootfs(ctx, imageID, key)
	}
	return m.cfg.Images.PrepareIDMappedRootfs(ctx, imageID, key, image.IDMap{UserNS: sb.UserNS, UID: uns.rootUID(), GID: uns.rootGID()})
}

// mountIDMappings makes mnt idmapped with the CRI mount's mappings (kubelet
// gives a user-namespaced pod's volumes the pod's). Mappings need the pod's
// user namespace and come as UID and GID mappings together.
func mountIDMappings(mnt *specs.Mount, m *runtimeapi.Mount, pod *userNS) error {
	uids, gids := m.GetUidMappings(), m.GetGidMappings()
	if len(uids) == 0 && len(gids) == 0 {
		return nil
	}
	if pod == nil {
		return invalid("mount %s has ID mappings, but its pod has no user namespace", m.GetContainerPath())
	}
	if len(uids) == 0 || len(gids) == 0 {
		return invalid("mount %s has %d UID and %d GID mappings: an idmapped mount needs both", m.GetContainerPath(), len(uids), len(gids))
	}
	conv := func(in []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
		out := make([]specs.LinuxIDMapping, len(in))
		for i, x := range in {
			var err error
			if out[i], err = specIDMapping(x); err != nil {
				return nil, invalid("mount %s: %v", m.GetContainerPath(), err)
			}
		}
		return out, nil
	}
	var err error
	if mnt.UIDMappings, err = conv(uids); err != nil {
		return err
	}
	mnt.GIDMappings, err = conv(gids)
	return err
}

// specIDMapping converts a CRI ID mapping, refusing an empty one and one
// that runs past the last ID (4294967294: -1 is no ID) on either side.
func specIDMapping(x *runtimeapi.IDMapping) (specs.LinuxIDMapping, error) {
	c, h, l := x.GetContainerId(), x.GetHostId(), x.GetLength()
	switch {
	case l == 0:
		return specs.LinuxIDMapping{}, fmt.Errorf("ID mapping %d:%d has length 0", c, h)
	case uint64(h)+uint64(l) > 1<<32-1, uint64(c)+uint64(l) > 1<<32-1:
		return specs.LinuxIDMapping{}, fmt.Errorf("ID mapping %d:%d:%d runs past the last ID", c, h, l)
	}
	return specs.LinuxIDMapping{ContainerID: c, HostID: h, Size: l}, nil
}
