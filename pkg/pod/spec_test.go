package pod

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/image"
)

// baseInput is a container in a ready sandbox with a small user database,
// for the spec table tests to change.
func baseInput() specInput {
	return specInput{
		id: "c1",
		sb: &Sandbox{ID: "sb1", NetNS: "/run/cri-shim/netns/sb1", PausePid: 42, ShmPath: "/run/cri-shim/shm/sb1", Cgroup: "/kubepods/pod1",
			Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}}},
		cfg: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
		},
		img: &image.Image{ID: "sha256:abc", Config: image.ImageConfig{
			Entrypoint: []string{"/entry"}, Cmd: []string{"default-arg"}, Env: []string{"PATH=/bin", "FROM_IMAGE=1"}, WorkingDir: "/work"}},
		rootfs:   "/rootfs",
		podFiles: "/var/lib/cri-shim/sandboxes/sb1",
		users: userDB{
			users:  []passwdEntry{{"root", 0, 0}, {"www-data", 33, 33}, {"default-user", 1000, 1000}},
			groups: []groupEntry{{name: "root", gid: 0}, {name: "www-data", gid: 33}, {name: "extra", gid: 50000, members: []string{"default-user"}}},
		},
	}
}

// userns puts in's pod in a user namespace mapping 0-65535 to host.
func userns(in *specInput, host uint32) {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: 65536}}
	in.sb.UserNS = "/run/cri-shim/userns/sb1"
	in.sb.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}}}
	in.userns = sandboxUserNS(in.sb)
}

func mount(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func namespace(s *specs.Spec, typ specs.LinuxNamespaceType) (string, bool) {
	for _, n := range s.Linux.Namespaces {
		if n.Type == typ {
			return n.Path, true
		}
	}
	return "", false
}

func TestContainerSpec(t *testing.T) {
	sc := func(in *specInput) *runtimeapi.LinuxContainerSecurityContext { return in.cfg.Linux.SecurityContext }
	tests := []struct {
		desc         string
		configChange func(in *specInput)
		specCheck    func(t *testing.T, s *specs.Spec)
		wantErr      string
	}{
		{desc: "image entrypoint and cmd, env merged, image workdir",
			specCheck: func(t *testing.T, s *specs.Spec) {
				if got := strings.Join(s.Process.Args, " "); got != "/entry default-arg" {
					t.Errorf("args = %q", got)
				}
				if !slices.Contains(s.Process.Env, "FROM_IMAGE=1") || s.Process.Cwd != "/work" {
					t.Errorf("env %v cwd %q", s.Process.Env, s.Process.Cwd)
				}
			}},
		{desc: "CRI args replace the image cmd, keep its entrypoint",
			configChange: func(in *specInput) { in.cfg.Args = []string{"a", "b"} },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if got := strings.Join(s.Process.Args, " "); got != "/entry a b" {
					t.Errorf("args = %q", got)
				}
			}},
		{desc: "CRI command replaces the entrypoint and drops the image cmd",
			configChange: func(in *specInput) { in.cfg.Command = []string{"sh"} },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if got := strings.Join(s.Process.Args, " "); got != "sh" {
					t.Errorf("args = %q", got)
				}
			}},
		{desc: "no command anywhere is an error",
			configChange: func(in *specInput) { in.img.Config.Entrypoint, in.img.Config.Cmd = nil, nil },
			wantErr:      "has no command"},
		{desc: "CRI env overrides the image's",
			configChange: func(in *specInput) {
				in.cfg.Envs = []*runtimeapi.KeyValue{{Key: "FROM_IMAGE", Value: []byte("2")}, {Key: "NEW", Value: []byte("x")}}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if !slices.Contains(s.Process.Env, "FROM_IMAGE=2") || slices.Contains(s.Process.Env, "FROM_IMAGE=1") || !slices.Contains(s.Process.Env, "NEW=x") {
					t.Errorf("env = %v", s.Process.Env)
				}
			}},
		{desc: "user-namespaced pod: the pod's user namespace joined by its pin, without mappings; pod files idmapped, volumes as kubelet asks",
			configChange: func(in *specInput) {
				userns(in, 100000)
				m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
				in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: "/var/lib/kubelet/v", UidMappings: m, GidMappings: m},
					{ContainerPath: "/plain", HostPath: "/srv"}}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if p, ok := namespace(s, specs.UserNamespace); !ok || p != "/run/cri-shim/userns/sb1" {
					t.Errorf("user namespace %q (present %v), want the pod's pin", p, ok)
				}
				if len(s.Linux.UIDMappings) != 0 || len(s.Linux.GIDMappings) != 0 {
					t.Errorf("mappings %v %v beside a userns path (runc >= 1.2 refuses differing ones)", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
				for _, dst := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/vol"} {
					m := mount(s, dst)
					if m == nil || len(m.UIDMappings) != 1 || m.UIDMappings[0].HostID != 100000 || m.UIDMappings[0].Size != 65536 || len(m.GIDMappings) != 1 {
						t.Errorf("%s: %+v, want idmapped with the pod's mapping", dst, m)
					}
				}
				if m := mount(s, "/plain"); m == nil || len(m.UIDMappings) != 0 {
					t.Errorf("/plain: %+v, want a plain bind mount", m)
				}
			}},
		{desc: "user-namespaced pod, no masked or read-only paths: procMount Unmasked",
			configChange: func(in *specInput) { userns(in, 100000) },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
					t.Errorf("masked %v read-only %v, want none", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
			}},
		{desc: "host user namespace, no masked paths: the defaults (crictl sends none)",
			specCheck: func(t *testing.T, s *specs.Spec) {
				if len(s.Linux.MaskedPaths) == 0 || len(s.Linux.ReadonlyPaths) == 0 {
					t.Errorf("masked %v read-only %v, want the defaults", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
				if _, ok := namespace(s, specs.UserNamespace); ok {
					t.Error("a user namespace in a pod without one")
				}
			}},
		{desc: "volume mappings in a pod without a user namespace are invalid",
			configChange: func(in *specInput) {
				m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
				in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: "/v", UidMappings: m, GidMappings: m}}
			},
			wantErr: "no user namespace"},
		{desc: "image user by name",
			configChange: func(in *specInput) { in.img.Config.User = "www-data" },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if u := s.Process.User; u.UID != 33 || u.GID != 33 {
					t.Errorf("user = %+v", u)
				}
			}},
		{desc: "run_as_user wins over the image, run_as_group sets the gid",
			configChange: func(in *specInput) {
				in.img.Config.User = "www-data"
				sc(in).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				sc(in).RunAsGroup = &runtimeapi.Int64Value{Value: 2000}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if u := s.Process.User; u.UID != 1000 || u.GID != 2000 {
					t.Errorf("user = %+v", u)
				}
			}},
		{desc: "run_as_group without a user is invalid",
			configChange: func(in *specInput) { sc(in).RunAsGroup = &runtimeapi.Int64Value{Value: 5} },
			wantErr:      "run_as_group"},
		{desc: "unknown user name is invalid",
			configChange: func(in *specInput) { sc(in).RunAsUsername = "nobody-here" },
			wantErr:      "not in the image"},
		{desc: "supplemental groups policy Merge adds the image's groups",
			configChange: func(in *specInput) {
				sc(in).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				sc(in).SupplementalGroups = []int64{1234}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if got := s.Process.User.AdditionalGids; !slices.Equal(got, []uint32{1000, 1234, 50000}) {
					t.Errorf("groups = %v", got)
				}
			}},
		{desc: "supplemental groups policy Strict does not",
			configChange: func(in *specInput) {
				sc(in).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				sc(in).SupplementalGroups = []int64{1234}
				sc(in).SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if got := s.Process.User.AdditionalGids; !slices.Equal(got, []uint32{1000, 1234}) {
					t.Errorf("groups = %v", got)
				}
			}},
		{desc: "pod namespaces are joined through the pause process, PID by mode",
			configChange: func(in *specInput) {
				sc(in).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if p, _ := namespace(s, specs.NetworkNamespace); p != "/run/cri-shim/netns/sb1" {
					t.Errorf("net = %q", p)
				}
				if p, _ := namespace(s, specs.IPCNamespace); p != "/proc/42/ns/ipc" {
					t.Errorf("ipc = %q", p)
				}
				if p, _ := namespace(s, specs.UTSNamespace); p != "/proc/42/ns/uts" {
					t.Errorf("uts = %q", p)
				}
				if p, ok := namespace(s, specs.PIDNamespace); !ok || p != "" {
					t.Errorf("pid = %q %v, want a new one", p, ok)
				}
			}},
		{desc: "pod PID namespace",
			configChange: func(in *specInput) {
				sc(in).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if p, _ := namespace(s, specs.PIDNamespace); p != "/proc/42/ns/pid" {
					t.Errorf("pid = %q", p)
				}
			}},
		{desc: "host network, IPC and PID",
			configChange: func(in *specInput) {
				in.sb.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}}}
				in.sb.ShmPath = ""
				sc(in).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				for _, typ := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.PIDNamespace, specs.UTSNamespace} {
					if _, ok := namespace(s, typ); ok {
						t.Errorf("%s namespace present", typ)
					}
				}
				if m := mount(s, "/dev/shm"); m == nil || m.Source != "/dev/shm" {
					t.Errorf("/dev/shm = %+v, want the host's", m)
				}
				if m := mount(s, "/etc/hosts"); m == nil || m.Source != "/etc/hosts" {
					t.Errorf("/etc/hosts = %+v, want the host's", m)
				}
			}},
		{desc: "pod files and /dev/shm are mounted, unless kubelet mounts its own",
			configChange: func(in *specInput) {
				in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/etc/hosts", HostPath: "/kubelet/etc-hosts"}}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if m := mount(s, "/etc/hosts"); m == nil || m.Source != "/kubelet/etc-hosts" {
					t.Errorf("/etc/hosts = %+v", m)
				}
				if m := mount(s, "/etc/resolv.conf"); m == nil || m.Source != "/var/lib/cri-shim/sandboxes/sb1/resolv.conf" {
					t.Errorf("/etc/resolv.conf = %+v", m)
				}
				if m := mount(s, "/dev/shm"); m == nil || m.Source != "/run/cri-shim/shm/sb1" {
					t.Errorf("/dev/shm = %+v", m)
				}
			}},
		{desc: "mount propagation and read-only modes",
			configChange: func(in *specInput) {
				in.cfg.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/ro", HostPath: "/h1", Readonly: true},
					{ContainerPath: "/rro", HostPath: "/h2", Readonly: true, RecursiveReadOnly: true},
					{ContainerPath: "/slave", HostPath: "/h3", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
					{ContainerPath: "/shared", HostPath: "/h4", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
				}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				want := map[string][]string{"/ro": {"rprivate", "ro"}, "/rro": {"rprivate", "rro"}, "/slave": {"rslave", "rw"}, "/shared": {"rshared", "rw"}}
				for dst, opts := range want {
					m := mount(s, dst)
					if m == nil || !slices.Contains(m.Options, opts[0]) || !slices.Contains(m.Options, opts[1]) || !slices.Contains(m.Options, "rbind") {
						t.Errorf("%s = %+v, want %v", dst, m, opts)
					}
				}
				if s.Linux.RootfsPropagation != "rshared" {
					t.Errorf("rootfs propagation = %q", s.Linux.RootfsPropagation)
				}
			}},
		{desc: "recursive read-only needs readonly",
			configChange: func(in *specInput) {
				in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/rro", HostPath: "/h", RecursiveReadOnly: true}}
			},
			wantErr: "recursive read-only needs readonly"},
		{desc: "relative mount destination is invalid",
			configChange: func(in *specInput) { in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "rel", HostPath: "/h"}} },
			wantErr:      "not an absolute path"},
		{desc: "capabilities: drop ALL then add one",
			configChange: func(in *specInput) {
				sc(in).Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"net_admin"}}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if got := s.Process.Capabilities.Bounding; !slices.Equal(got, []string{"CAP_NET_ADMIN"}) {
					t.Errorf("caps = %v", got)
				}
			}},
		{desc: "capabilities: drop one of the defaults",
			configChange: func(in *specInput) {
				sc(in).Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"CAP_CHOWN"}}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if caps := s.Process.Capabilities.Effective; slices.Contains(caps, "CAP_CHOWN") || !slices.Contains(caps, "CAP_KILL") {
					t.Errorf("caps = %v", caps)
				}
			}},
		{desc: "privileged: all capabilities the runtime has, no masks, no seccomp, writable sysfs",
			configChange: func(in *specInput) {
				sc(in).Privileged = true
				in.seccomp = defaultSeccomp(nil)
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if !slices.Equal(s.Process.Capabilities.Bounding, allCapabilities()) || len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 || s.Linux.Seccomp != nil {
					t.Errorf("privileged spec: caps %d masked %v ro %v seccomp %v", len(s.Process.Capabilities.Bounding), s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Linux.Seccomp != nil)
				}
				if m := mount(s, "/sys"); m == nil || slices.Contains(m.Options, "ro") {
					t.Errorf("/sys = %+v", m)
				}
			}},
		{desc: "read-only rootfs, no_new_privs, masked and read-only paths",
			configChange: func(in *specInput) {
				sc(in).ReadonlyRootfs = true
				sc(in).NoNewPrivs = true
				sc(in).MaskedPaths = []string{"/proc/x"}
				sc(in).ReadonlyPaths = []string{"/proc/y"}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if !s.Root.Readonly || !s.Process.NoNewPrivileges || !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/y"}) {
					t.Errorf("root %+v nnp %v masked %v ro %v", s.Root, s.Process.NoNewPrivileges, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
			}},
		{desc: "default masked paths when none are given",
			specCheck: func(t *testing.T, s *specs.Spec) {
				if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
					t.Errorf("masked %v ro %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
			}},
		{desc: "resources: CPU and memory, OOM score clamped, cgroup under the pod's parent",
			configChange: func(in *specInput) {
				in.cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000,
					MemoryLimitInBytes: 64 << 20, OomScoreAdj: -1000}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				r := s.Linux.Resources
				if *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.Memory.Limit != 64<<20 {
					t.Errorf("resources = %+v %+v", r.CPU, r.Memory)
				}
				if *s.Process.OOMScoreAdj < -999 {
					t.Errorf("oom_score_adj %d was not clamped to the runtime's own", *s.Process.OOMScoreAdj)
				}
				if s.Linux.CgroupsPath != "/kubepods/pod1/c1" {
					t.Errorf("cgroupsPath = %q", s.Linux.CgroupsPath)
				}
				if len(r.Devices) == 0 || r.Devices[0].Allow {
					t.Errorf("the device rules lost deny-all: %+v", r.Devices)
				}
			}},
		{desc: "AppArmor profile applied",
			configChange: func(in *specInput) { in.apparmor = "cri-shim-default" },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if s.Process.ApparmorProfile != "cri-shim-default" {
					t.Errorf("apparmorProfile = %q", s.Process.ApparmorProfile)
				}
			}},
		{desc: "AppArmor profile applied to a privileged container (an explicit Localhost profile)",
			configChange: func(in *specInput) {
				in.apparmor = "my-profile"
				in.sb.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
				sc(in).Privileged = true
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if s.Process.ApparmorProfile != "my-profile" {
					t.Errorf("apparmorProfile = %q", s.Process.ApparmorProfile)
				}
			}},
		{desc: "no AppArmor profile: none in the spec",
			specCheck: func(t *testing.T, s *specs.Spec) {
				if s.Process.ApparmorProfile != "" {
					t.Errorf("apparmorProfile = %q", s.Process.ApparmorProfile)
				}
			}},
		{desc: "systemd driver: a scope in the pod's slice",
			configChange: func(in *specInput) {
				in.sb.CgroupDriver, in.sb.Cgroup = "systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				if want := "kubepods-burstable-pod1.slice:cri-shim:c1"; s.Linux.CgroupsPath != want {
					t.Errorf("cgroupsPath = %q, want %q", s.Linux.CgroupsPath, want)
				}
			}},
		{desc: "systemd driver: a cgroupfs parent is refused",
			configChange: func(in *specInput) { in.sb.CgroupDriver = "systemd" },
			wantErr:      "not a systemd slice name"},
		{desc: "tty sets TERM",
			configChange: func(in *specInput) { in.cfg.Tty = true },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if !s.Process.Terminal || !slices.Contains(s.Process.Env, "TERM=xterm") {
					t.Errorf("terminal %v env %v", s.Process.Terminal, s.Process.Env)
				}
			}},
		{desc: "seccomp profile passes through",
			configChange: func(in *specInput) { in.seccomp = defaultSeccomp(nil) },
			specCheck: func(t *testing.T, s *specs.Spec) {
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
					t.Errorf("seccomp = %+v", s.Linux.Seccomp)
				}
			}},
		{desc: "an image volume: its rootfs bound read-only, not noexec",
			configChange: func(in *specInput) {
				in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/v/", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "data:1"}}}
				in.imageVolumes = map[string]string{"/v": "/images/rootfs/c1-iv0/merged/sub"}
			},
			specCheck: func(t *testing.T, s *specs.Spec) {
				for _, m := range s.Mounts {
					if m.Destination == "/v" {
						if m.Source != "/images/rootfs/c1-iv0/merged/sub" || !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "noexec") {
							t.Errorf("image volume mount %+v", m)
						}
						return
					}
				}
				t.Errorf("no mount at /v: %+v", s.Mounts)
			}},
		{desc: "an image volume that was not mounted is an error",
			configChange: func(in *specInput) {
				in.cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "data:1"}}}
			},
			wantErr: "was not mounted"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			in := baseInput()
			if tt.configChange != nil {
				tt.configChange(&in)
			}
			s, _, _, err := containerSpec(in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.specCheck(t, s)
		})
	}
}

func TestSeccompProfile(t *testing.T) {
	tests := []struct {
		desc     string
		sc       *runtimeapi.LinuxContainerSecurityContext
		wantNil  bool
		checkCap string // a syscall that must be allowed
	}{
		{"no profile is unconfined", &runtimeapi.LinuxContainerSecurityContext{}, true, ""},
		{"unconfined", &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}, true, ""},
		{"runtime default", &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}}, false, "read"},
		{"deprecated path runtime/default", &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "runtime/default"}, false, "read"},
		{"privileged ignores it", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Seccomp: &runtimeapi.SecurityProfile{}}, true, ""},
	}
	for _, tt := range tests {
		p, err := seccompProfile(tt.sc, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.desc, err)
		}
		if (p == nil) != tt.wantNil {
			t.Errorf("%s: profile %v, want nil %v", tt.desc, p != nil, tt.wantNil)
		}
		if p != nil && !slices.Contains(p.Syscalls[0].Names, tt.checkCap) {
			t.Errorf("%s: %s not allowed", tt.desc, tt.checkCap)
		}
	}
	// Capability-gated syscalls follow the granted capabilities.
	without := defaultSeccomp(nil)
	with := defaultSeccomp([]string{"CAP_SYS_ADMIN"})
	if slices.Contains(without.Syscalls[0].Names, "mount") || !slices.Contains(with.Syscalls[0].Names, "mount") {
		t.Errorf("mount: allowed without CAP_SYS_ADMIN %v, with %v", slices.Contains(without.Syscalls[0].Names, "mount"), slices.Contains(with.Syscalls[0].Names, "mount"))
	}
	if _, err := seccompProfile(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent.json"}}, nil); err == nil {
		t.Error("a missing localhost profile is not an error")
	}
	// io_uring stays denied whatever the capabilities (EPERM by the default
	// action), as in containerd's and Docker's profiles.
	var all []string
	for c := range seccompByCapability {
		all = append(all, c)
	}
	for _, caps := range [][]string{nil, all} {
		for _, rule := range defaultSeccomp(caps).Syscalls {
			for _, name := range rule.Names {
				if strings.HasPrefix(name, "io_uring") && rule.Action == specs.ActAllow {
					t.Errorf("%s allowed with capabilities %v", name, caps)
				}
			}
		}
	}
}

func TestResolveUser(t *testing.T) {
	db := baseInput().users
	tests := []struct {
		spec     string
		uid, gid uint32
		wantErr  bool
	}{
		{"", 0, 0, false},
		{"1000", 1000, 1000, false},
		{"1002", 1002, 0, false}, // no passwd entry: gid 0
		{"1003:1004", 1003, 1004, false},
		{"www-data", 33, 33, false},
		{"www-data:1004", 33, 1004, false},
		{"www-data:extra", 33, 50000, false},
		{"ghost", 0, 0, true},
		{"www-data:ghosts", 0, 0, true},
	}
	for _, tt := range tests {
		id, err := db.resolveUser(tt.spec)
		if (err != nil) != tt.wantErr || (err == nil && (id.uid != tt.uid || id.gid != tt.gid)) {
			t.Errorf("resolveUser(%q) = %+v, %v; want %d:%d err %v", tt.spec, id, err, tt.uid, tt.gid, tt.wantErr)
		}
	}
}

func TestStopSignal(t *testing.T) {
	tests := []struct {
		cri   runtimeapi.Signal
		image string
		want  string
	}{
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "", "terminated"},
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "SIGQUIT", "quit"},
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "int", "interrupt"},
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "9", "killed"},
		{runtimeapi.Signal_SIGNAL_SIGUSR1, "SIGQUIT", "user defined signal 1"},
	}
	for _, tt := range tests {
		c := &Container{Config: &runtimeapi.ContainerConfig{StopSignal: tt.cri}, StopSignal: tt.image}
		if got := stopSignal(c).String(); got != tt.want {
			t.Errorf("stopSignal(%v, %q) = %s, want %s", tt.cri, tt.image, got, tt.want)
		}
	}
}
