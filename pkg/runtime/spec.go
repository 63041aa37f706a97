package runtime

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOpt changes one aspect of an OCI spec. Options are pure: they only
// edit the spec, so a spec is built and tested without touching the system.
type SpecOpt func(*specs.Spec) error

// ociVersion is what we declare: runc 1.1 implements 1.0.2, and crun as
// packaged in Debian refuses anything it does not know.
const ociVersion = "1.0.2"

// DefaultPath is the PATH of a container whose image sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCapabilities are those of an unprivileged container (the same set
// Docker, containerd and CRI-O grant).
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths and DefaultReadonlyPaths hide kernel interfaces a
// container has no business with.
var (
	DefaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	DefaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// NewSpec returns the default spec of an unprivileged container with its
// root at "rootfs" in the bundle, then applies opts in order.
func NewSpec(opts ...SpecOpt) (*specs.Spec, error) {
	s := &specs.Spec{
		Version: ociVersion,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Cwd: "/",
			Env: []string{DefaultPath},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  slices.Clone(DefaultCapabilities),
				Effective: slices.Clone(DefaultCapabilities),
				Permitted: slices.Clone(DefaultCapabilities),
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			MaskedPaths:   slices.Clone(DefaultMaskedPaths),
			ReadonlyPaths: slices.Clone(DefaultReadonlyPaths),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{
				// Deny every device; runc adds the standard ones (null,
				// zero, full, random, urandom, tty, ptmx, pts) itself.
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// WithArgs sets the process's command line.
func WithArgs(args ...string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("no command to run")
		}
		s.Process.Args = args
		return nil
	}
}

// WithEnv sets variables (KEY=VALUE), replacing existing ones of the same
// key and keeping the order of first appearance.
func WithEnv(env ...string) SpecOpt {
	return func(s *specs.Spec) error {
		for _, kv := range env {
			key, _, _ := strings.Cut(kv, "=")
			i := slices.IndexFunc(s.Process.Env, func(e string) bool {
				k, _, _ := strings.Cut(e, "=")
				return k == key
			})
			if i >= 0 {
				s.Process.Env[i] = kv
			} else {
				s.Process.Env = append(s.Process.Env, kv)
			}
		}
		return nil
	}
}

// WithCwd sets the working directory.
func WithCwd(dir string) SpecOpt {
	return func(s *specs.Spec) error {
		if dir != "" {
			s.Process.Cwd = dir
		}
		return nil
	}
}

// WithTerminal allocates a terminal for the process.
func WithTerminal(on bool) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.Terminal = on
		if on {
			WithEnv("TERM=xterm")(s)
		}
		return nil
	}
}

// WithUser sets the numeric identity of the process.
func WithUser(uid, gid uint32, additional []uint32) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: additional}
		return nil
	}
}

// WithHostname sets the UTS hostname.
func WithHostname(name string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Hostname = name
		return nil
	}
}

// WithRootfs sets the root path (absolute, or relative to the bundle).
func WithRootfs(path string, readonly bool) SpecOpt {
	return func(s *specs.Spec) error {
		s.Root = &specs.Root{Path: path, Readonly: readonly}
		return nil
	}
}

// WithNamespace joins the namespace at path ("" makes a new one); a
// namespace type absent from the spec is added.
func WithNamespace(typ specs.LinuxNamespaceType, path string) SpecOpt {
	return func(s *specs.Spec) error {
		for i := range s.Linux.Namespaces {
			if s.Linux.Namespaces[i].Type == typ {
				s.Linux.Namespaces[i].Path = path
				return nil
			}
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: typ, Path: path})
		return nil
	}
}

// WithoutNamespace shares the runtime's own namespace of typ (host
// network, host PID, host IPC).
func WithoutNamespace(typ specs.LinuxNamespaceType) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == typ })
		return nil
	}
}

// WithMount adds a mount, replacing any at the same destination.
func WithMount(m specs.Mount) SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = slices.DeleteFunc(s.Mounts, func(o specs.Mount) bool { return o.Destination == m.Destination })
		s.Mounts = append(s.Mounts, m)
		return nil
	}
}

// WithCgroupsPath places the container in a cgroup.
func WithCgroupsPath(path string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.CgroupsPath = path
		return nil
	}
}

// WithOOMScoreAdj sets the process's OOM score adjustment, but never below
// the runtime's own: lowering it needs CAP_SYS_RESOURCE, and without it
// runc fails with only "can't get final child's PID from pipe: EOF"
// (containerd's restrict_oom_score_adj does the same).
func WithOOMScoreAdj(adj int, restrict bool) SpecOpt {
	return func(s *specs.Spec) error {
		if restrict {
			if own, err := OwnOOMScoreAdj(); err == nil && adj < own {
				adj = own
			}
		}
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}

// OwnOOMScoreAdj reads the calling process's oom_score_adj.
func OwnOOMScoreAdj() (int, error) {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// WithCapabilities sets the capability sets (bounding, effective,
// permitted; inheritable and ambient stay empty as in every CRI runtime).
func WithCapabilities(caps []string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding: slices.Clone(caps), Effective: slices.Clone(caps), Permitted: slices.Clone(caps),
		}
		return nil
	}
}

// WithNoNewPrivileges sets no_new_privs.
func WithNoNewPrivileges(on bool) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.NoNewPrivileges = on
		return nil
	}
}

// WithMaskedPaths and WithReadonlyPaths replace the lists.
func WithMaskedPaths(paths []string) SpecOpt {
	return func(s *specs.Spec) error { s.Linux.MaskedPaths = paths; return nil }
}

func WithReadonlyPaths(paths []string) SpecOpt {
	return func(s *specs.Spec) error { s.Linux.ReadonlyPaths = paths; return nil }
}

// WithSysctl sets kernel parameters of the container's namespaces.
func WithSysctl(sysctls map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

// WithAnnotations adds annotations.
func WithAnnotations(a map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(a) == 0 {
			return nil
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for k, v := range a {
			s.Annotations[k] = v
		}
		return nil
	}
}

// WithResources replaces the resource limits, keeping the device rules.
func WithResources(r *specs.LinuxResources) SpecOpt {
	return func(s *specs.Spec) error {
		if r == nil {
			return nil
		}
		devices := s.Linux.Resources.Devices
		cp := *r
		cp.Devices = append(devices, r.Devices...)
		s.Linux.Resources = &cp
		return nil
	}
}

// WithDevice makes a host device available in the container.
func WithDevice(d specs.LinuxDevice, access string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.Devices = append(s.Linux.Devices, d)
		major, minor := d.Major, d.Minor
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: access,
		})
		return nil
	}
}

// WithSeccomp sets (nil: removes) the seccomp filter.
func WithSeccomp(p *specs.LinuxSeccomp) SpecOpt {
	return func(s *specs.Spec) error { s.Linux.Seccomp = p; return nil }
}

// WithApparmor sets the AppArmor profile.
func WithApparmor(profile string) SpecOpt {
	return func(s *specs.Spec) error { s.Process.ApparmorProfile = profile; return nil }
}

// WithSelinuxLabel sets the process's SELinux label.
func WithSelinuxLabel(label string) SpecOpt {
	return func(s *specs.Spec) error { s.Process.SelinuxLabel = label; return nil }
}
