package pod

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// specInput is everything a container's OCI spec is built from. Reading
// the system (the image's users, the pause pid, devices) happens before,
// so building the spec is pure and table-testable.
type specInput struct {
	id string
	sb *Sandbox
	// userns is the pod's user namespace (sandboxUserNS; nil: the host's).
	userns   *userNS
	cfg      *runtimeapi.ContainerConfig
	img      *image.Image
	rootfs   string
	podFiles string // hostname, hosts, resolv.conf of the pod
	users    userDB
	// targetPid is the init pid of the container whose PID namespace a
	// TARGET-mode container joins.
	targetPid int
	devices   []specs.LinuxDevice // resolved from cfg.Devices
	seccomp   *specs.LinuxSeccomp // resolved profile (nil: unconfined)
	apparmor  string              // resolved AppArmor profile ("": none applied)
	// imageVolumes are the host paths of the image volumes, by container
	// path (mountImageVolumes).
	imageVolumes map[string]string
	// criuConfig is the CRIU configuration file the OCI runtime hands CRIU
	// when the container is checkpointed (CheckpointContainer writes it).
	criuConfig string
}

// criuConfigAnnotation names the CRIU configuration file runc and crun
// pass to CRIU on checkpoint. cri-shim always sets it, after the user's
// annotations: a pod that named its own file could make CRIU, running as
// root on the host, execute an action script of its choice.
const criuConfigAnnotation = "org.criu.config"

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// containerSpec builds the OCI spec of an app container.
func containerSpec(in specInput) (*specs.Spec, *identity, []uint32, error) {
	cfg := in.cfg
	sc := cfg.GetLinux().GetSecurityContext()
	opts := []runtime.SpecOpt{runtime.WithRootfs(in.rootfs, sc.GetReadonlyRootfs())}

	args, err := commandLine(cfg, in.img)
	if err != nil {
		return nil, nil, nil, err
	}
	opts = append(opts, runtime.WithArgs(args...))
	env := slices.Clone(in.img.Config.Env)
	for _, e := range cfg.GetEnvs() {
		env = append(env, e.GetKey()+"="+string(e.GetValue()))
	}
	opts = append(opts, runtime.WithEnv(env...))
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = in.img.Config.WorkingDir
	}
	opts = append(opts, runtime.WithCwd(cwd), runtime.WithTerminal(cfg.GetTty()))

	id, groups, err := processUser(sc, in.img, in.users)
	if err != nil {
		return nil, nil, nil, err
	}
	opts = append(opts, runtime.WithUser(id.uid, id.gid, groups))
	if id.name != "" {
		opts = append(opts, runtime.WithEnv("HOME="+homeOf(in.users, id)))
	}

	mounts, err := containerMounts(in)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, m := range mounts {
		opts = append(opts, runtime.WithMount(m))
	}
	opts = append(opts, namespaceOpts(in)...)
	opts = append(opts, securityOpts(in)...)
	for _, d := range in.devices {
		access := "rwm"
		for _, cd := range cfg.GetDevices() {
			if cd.GetContainerPath() == d.Path && cd.GetPermissions() != "" {
				access = cd.GetPermissions()
			}
		}
		opts = append(opts, runtime.WithDevice(d, access))
	}
	res := cfg.GetLinux().GetResources()
	opts = append(opts,
		withCgroup(in.sb.cgroup(in.id)),
		runtime.WithResources(linuxResources(res)),
		runtime.WithOOMScoreAdj(int(res.GetOomScoreAdj()), true),
		runtime.WithAnnotations(cfg.GetAnnotations()),
		runtime.WithAnnotations(map[string]string{
			"io.kubernetes.cri.container-type": "container",
			"io.kubernetes.cri.container-name": cfg.GetMetadata().GetName(),
			"io.kubernetes.cri.sandbox-id":     in.sb.ID,
			criuConfigAnnotation:               in.criuConfig,
		}),
	)
	if propagation := rootfsPropagation(cfg.GetMounts()); propagation != "" {
		opts = append(opts, func(s *specs.Spec) error { s.Linux.RootfsPropagation = propagation; return nil })
	}
	spec, err := runtime.NewSpec(opts...)
	if err != nil {
		return nil, nil, nil, err
	}
	return spec, &id, groups, nil
}

// commandLine follows Docker's rules: the CRI command replaces the image's
// entrypoint (and drops its cmd); CRI args replace the image's cmd.
func commandLine(cfg *runtimeapi.ContainerConfig, img *image.Image) ([]string, error) {
	var args []string
	if len(cfg.GetCommand()) > 0 {
		args = append(slices.Clone(cfg.GetCommand()), cfg.GetArgs()...)
	} else {
		args = slices.Clone(img.Config.Entrypoint)
		if len(cfg.GetArgs()) > 0 {
			args = append(args, cfg.GetArgs()...)
		} else {
			args = append(args, img.Config.Cmd...)
		}
	}
	if len(args) == 0 {
		return nil, invalid("container %q has no command: neither the config nor the image %s gives one", cfg.GetMetadata().GetName(), img.ID)
	}
	return args, nil
}

// processUser resolves the container's identity and supplementary groups.
// With SupplementalGroupsPolicy Merge (the default) the groups the image's
// /etc/group lists the user in are added; with Strict only the primary
// group and the requested ones.
func processUser(sc *runtimeapi.LinuxContainerSecurityContext, img *image.Image, db userDB) (identity, []uint32, error) {
	var id identity
	var err error
	switch {
	case sc.GetRunAsUser() != nil:
		uid := sc.GetRunAsUser().GetValue()
		id = identity{uid: uint32(uid)}
		if u, ok := db.userByUID(id.uid); ok {
			id.gid, id.name = u.gid, u.name
		}
	case sc.GetRunAsUsername() != "":
		u, ok := db.userByName(sc.GetRunAsUsername())
		if !ok {
			return identity{}, nil, invalid("user %q is not in the image's /etc/passwd", sc.GetRunAsUsername())
		}
		id = identity{uid: u.uid, gid: u.gid, name: u.name}
	default:
		if id, err = db.resolveUser(img.Config.User); err != nil {
			return identity{}, nil, invalid("image user: %v", err)
		}
	}
	if sc.GetRunAsGroup() != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			// The CRI allows a group only with an explicit user.
			return identity{}, nil, invalid("run_as_group is set without run_as_user or run_as_username")
		}
		id.gid = uint32(sc.GetRunAsGroup().GetValue())
	}
	groups := []uint32{id.gid}
	for _, g := range sc.GetSupplementalGroups() {
		groups = append(groups, uint32(g))
	}
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict && id.name != "" {
		groups = append(groups, db.memberOf(id.name)...)
	}
	slices.Sort(groups)
	return id, slices.Compact(groups), nil
}

func homeOf(db userDB, id identity) string {
	if id.uid == 0 {
		return "/root"
	}
	return "/"
}

// containerMounts are the CRI mounts plus the pod files and /dev/shm the
// runtime provides when kubelet did not mount its own.
func containerMounts(in specInput) ([]specs.Mount, error) {
	var out []specs.Mount
	have := map[string]bool{}
	uns := in.userns
	for _, m := range in.cfg.GetMounts() {
		dst := m.GetContainerPath()
		if !filepath.IsAbs(dst) {
			return nil, invalid("mount destination %q is not an absolute path", dst)
		}
		src := m.GetHostPath()
		if ref := m.GetImage().GetImage(); ref != "" {
			// Read-only, but not noexec: images carry programs (KEP-4639).
			if src = in.imageVolumes[filepath.Clean(dst)]; src == "" {
				return nil, fmt.Errorf("image volume %s at %s was not mounted", ref, dst)
			}
			out = append(out, specs.Mount{Destination: filepath.Clean(dst), Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
			have[filepath.Clean(dst)] = true
			continue
		}
		opts := []string{"rbind"}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
		default:
			opts = append(opts, "rprivate")
		}
		switch {
		case m.GetRecursiveReadOnly():
			if !m.GetReadonly() {
				return nil, invalid("mount %s: recursive read-only needs readonly", dst)
			}
			if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, invalid("mount %s: recursive read-only needs private propagation", dst)
			}
			opts = append(opts, "rro")
		case m.GetReadonly():
			opts = append(opts, "ro")
		default:
			opts = append(opts, "rw")
		}
		mnt := specs.Mount{Destination: filepath.Clean(dst), Type: "bind", Source: src, Options: opts}
		if err := mountIDMappings(&mnt, m, uns); err != nil {
			return nil, err
		}
		out = append(out, mnt)
		have[filepath.Clean(dst)] = true
	}
	hostNet := in.sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		dst := "/etc/" + f
		if have[dst] {
			continue
		}
		opts := []string{"rbind", "rprivate"}
		if in.cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs() {
			opts = append(opts, "ro")
		}
		src := filepath.Join(in.podFiles, f)
		if f == "hosts" && hostNet {
			src = "/etc/hosts"
		}
		mnt := specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
		if uns != nil {
			// The pod's files are root's on the host: idmapped, they are
			// the pod root's, which may rewrite them like anywhere else.
			mnt.UIDMappings, mnt.GIDMappings = uns.uids, uns.gids
		}
		out = append(out, mnt)
	}
	if !have["/dev/shm"] {
		if in.sb.ShmPath != "" {
			out = append(out, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: in.sb.ShmPath, Options: []string{"rbind", "rprivate", "rw"}})
		} else {
			out = append(out, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate", "rw"}})
		}
	}
	// Privileged containers see the host's sysfs and cgroups writable.
	if in.cfg.GetLinux().GetSecurityContext().GetPrivileged() {
		out = append(out,
			specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "rw"}},
			specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "rw"}},
		)
	}
	return out, nil
}

// rootfsPropagation: a bidirectional mount needs a shared rootfs, a
// host-to-container one a slave rootfs, or the propagation cannot reach it.
func rootfsPropagation(mounts []*runtimeapi.Mount) string {
	p := ""
	for _, m := range mounts {
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			return "rshared"
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			p = "rslave"
		}
	}
	return p
}

// namespaceOpts joins the pod's namespaces held by the pause process.
func namespaceOpts(in specInput) []runtime.SpecOpt {
	podNS := in.sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	nsOpts := in.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	pause := func(t string) string { return fmt.Sprintf("/proc/%d/ns/%s", in.sb.PausePid, t) }
	var opts []runtime.SpecOpt
	if podNS.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, runtime.WithoutNamespace(specs.NetworkNamespace), runtime.WithoutNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, runtime.WithNamespace(specs.NetworkNamespace, in.sb.NetNS), runtime.WithNamespace(specs.UTSNamespace, pause("uts")))
	}
	if podNS.GetIpc() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, runtime.WithoutNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, runtime.WithNamespace(specs.IPCNamespace, pause("ipc")))
	}
	switch nsOpts.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
		opts = append(opts, runtime.WithoutNamespace(specs.PIDNamespace))
	case runtimeapi.NamespaceMode_POD:
		opts = append(opts, runtime.WithNamespace(specs.PIDNamespace, pause("pid")))
	case runtimeapi.NamespaceMode_TARGET:
		opts = append(opts, runtime.WithNamespace(specs.PIDNamespace, fmt.Sprintf("/proc/%d/ns/pid", in.targetPid)))
	}
	if in.sb.UserNS != "" {
		// By its pin, without mappings (see pause.Config.UserNS).
		opts = append(opts, runtime.WithNamespace(specs.UserNamespace, in.sb.UserNS))
	}
	if hostCgroups().v2 {
		opts = append(opts, runtime.WithNamespace(specs.CgroupNamespace, ""))
	}
	return opts
}

// securityOpts maps the security context: capabilities, privileged,
// no_new_privs, masked and read-only paths, seccomp.
func securityOpts(in specInput) []runtime.SpecOpt {
	sc := in.cfg.GetLinux().GetSecurityContext()
	var opts []runtime.SpecOpt
	if sc.GetPrivileged() {
		opts = append(opts,
			runtime.WithCapabilities(allCapabilities()),
			runtime.WithMaskedPaths(nil), runtime.WithReadonlyPaths(nil),
			runtime.WithSeccomp(nil),
			func(s *specs.Spec) error {
				s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
				return nil
			},
		)
		for _, d := range hostDevices() {
			opts = append(opts, func(s *specs.Spec) error { s.Linux.Devices = append(s.Linux.Devices, d); return nil })
		}
		return append(opts, runtime.WithNoNewPrivileges(sc.GetNoNewPrivs()), runtime.WithApparmor(in.apparmor))
	}
	caps := capabilities(sc.GetCapabilities())
	opts = append(opts, runtime.WithCapabilities(caps))
	if ambient := normalizeCaps(sc.GetCapabilities().GetAddAmbientCapabilities()); len(ambient) > 0 {
		opts = append(opts, func(s *specs.Spec) error {
			s.Process.Capabilities.Ambient = ambient
			s.Process.Capabilities.Inheritable = ambient
			return nil
		})
	}
	switch {
	case len(sc.GetMaskedPaths()) == 0 && len(sc.GetReadonlyPaths()) == 0 && in.sb.UserNS != "":
		// procMount: Unmasked (KEP-4265), which the API allows only with a
		// user namespace: kubelet sends empty lists, as it sends the full
		// default lists for procMount: Default. (Without a user namespace
		// empty lists keep the defaults: crictl sends none.)
		opts = append(opts, runtime.WithMaskedPaths(nil), runtime.WithReadonlyPaths(nil))
	default:
		if len(sc.GetMaskedPaths()) > 0 {
			opts = append(opts, runtime.WithMaskedPaths(slices.Clone(sc.GetMaskedPaths())))
		}
		if len(sc.GetReadonlyPaths()) > 0 {
			opts = append(opts, runtime.WithReadonlyPaths(slices.Clone(sc.GetReadonlyPaths())))
		}
	}
	opts = append(opts, runtime.WithNoNewPrivileges(sc.GetNoNewPrivs()), runtime.WithSeccomp(in.seccomp), runtime.WithApparmor(in.apparmor))
	return opts
}

// capabilities applies CRI's drop and add lists to the default set; "ALL"
// in drop empties it first, "ALL" in add grants every capability.
func capabilities(c *runtimeapi.Capability) []string {
	caps := slices.Clone(runtime.DefaultCapabilities)
	drop := normalizeCaps(c.GetDropCapabilities())
	add := normalizeCaps(c.GetAddCapabilities())
	if slices.Contains(drop, "CAP_ALL") {
		caps = nil
	} else {
		caps = slices.DeleteFunc(caps, func(s string) bool { return slices.Contains(drop, s) })
	}
	if slices.Contains(add, "CAP_ALL") {
		caps = allCapabilities()
	} else {
		for _, a := range add {
			if !slices.Contains(caps, a) {
				caps = append(caps, a)
			}
		}
	}
	return caps
}

func normalizeCaps(in []string) []string {
	out := make([]string, 0, len(in))
	for _, c := range in {
		c = strings.ToUpper(c)
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

// knownCapabilities in kernel order (capability.h).
var knownCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// allCapabilities is every capability this kernel knows that the runtime
// itself holds in its bounding set: a container cannot get more than its
// runtime has (here, root lacks CAP_SYS_RESOURCE), and asking makes runc
// fail with "unable to apply caps".
var allCapabilities = sync.OnceValue(func() []string {
	last := len(knownCapabilities) - 1
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n < last {
			last = n
		}
	}
	bounding := ^uint64(0)
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				if b, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
					bounding = b
				}
			}
		}
	}
	var out []string
	for i, c := range knownCapabilities[:last+1] {
		if bounding&(1<<i) != 0 {
			out = append(out, c)
		}
	}
	return out
})

// hostDevices lists the host's device nodes for privileged containers.
func hostDevices() []specs.LinuxDevice {
	var out []specs.LinuxDevice
	filepath.WalkDir("/dev", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch path {
			case "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/.lxc", "/dev/.udev":
				return filepath.SkipDir
			}
			return nil
		}
		if path == "/dev/console" || path == "/dev/ptmx" {
			return nil
		}
		if dev, err := deviceFromPath(path, path); err == nil {
			out = append(out, dev)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
