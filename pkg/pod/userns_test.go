package pod

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func idmap(c, h, l uint32) *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: c, HostId: h, Length: l}
}

func usernsPod(opts *runtimeapi.UserNamespace, hostNS ...string) *runtimeapi.PodSandboxConfig {
	ns := &runtimeapi.NamespaceOption{UsernsOptions: opts}
	for _, n := range hostNS {
		switch n {
		case "net":
			ns.Network = runtimeapi.NamespaceMode_NODE
		case "pid":
			ns.Pid = runtimeapi.NamespaceMode_NODE
		case "ipc":
			ns.Ipc = runtimeapi.NamespaceMode_NODE
		}
	}
	return &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
		SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}}}
}

// refused checks err against want: "" wants no error; else InvalidArgument
// saying want. It reports whether the case ended in an error.
func refused(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want InvalidArgument with %q", err, want)
	}
	return true
}

func TestPodUserNS(t *testing.T) {
	one := []*runtimeapi.IDMapping{idmap(0, 65536, 65536)}
	for _, tc := range []struct {
		desc    string
		cfg     *runtimeapi.PodSandboxConfig
		wantErr string // "" = valid
		wantNS  bool
	}{
		{"no options: the host's", usernsPod(nil), "", false},
		{"NODE", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}), "", false},
		{"NODE with mappings", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: one}), "takes no ID mappings", false},
		{"POD", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}), "", true},
		{"POD, short mapping", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idmap(0, 1000, 1)}, Gids: []*runtimeapi.IDMapping{idmap(0, 1000, 1)}}), "", true},
		{"POD without GID mapping", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one}), "exactly one", false},
		{"POD, two UID mappings", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idmap(0, 65536, 100), idmap(100, 70000, 100)}, Gids: one}), "exactly one", false},
		{"POD, root unmapped", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idmap(1, 65536, 65536)}, Gids: one}), "container ID 0", false},
		{"POD, GID root unmapped", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: one, Gids: []*runtimeapi.IDMapping{idmap(5, 65536, 65536)}}), "GID mapping must map container ID 0", false},
		{"POD, empty", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idmap(0, 65536, 0)}, Gids: one}), "length 0", false},
		{"POD, past the last ID", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idmap(0, 1<<32-65536, 65536)}, Gids: one}), "past the last ID", false},
		{"POD, host network", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, "net"), "host's network", false},
		{"POD, host PID", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, "pid"), "host's PID", false},
		{"POD, host IPC", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, "ipc"), "host's IPC", false},
		{"CONTAINER", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}), "CONTAINER is not supported", false},
		{"TARGET", usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}), "TARGET is not supported", false},
		{"unknown mode", usernsPod(&runtimeapi.UserNamespace{Mode: 42}), "unknown user namespace mode", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			u, err := podUserNS(tc.cfg)
			if refused(t, err, tc.wantErr) {
				return
			}
			if (u != nil) != tc.wantNS {
				t.Fatalf("user namespace %+v, want one: %v", u, tc.wantNS)
			}
		})
	}
}

func TestUserNSMaps(t *testing.T) {
	u, err := podUserNS(usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
		Uids: []*runtimeapi.IDMapping{idmap(0, 100000, 65535)}, Gids: []*runtimeapi.IDMapping{idmap(0, 200000, 70000)}}))
	if err != nil {
		t.Fatal(err)
	}
	if u.rootUID() != 100000 || u.rootGID() != 200000 {
		t.Errorf("root is %d:%d on the host, want 100000:200000", u.rootUID(), u.rootGID())
	}
	for id, want := range map[uint32]bool{0: true, 65534: true, 65535: false, 69999: false} {
		if got := u.maps(id); got != want {
			t.Errorf("maps(%d) = %v, want %v (UIDs 0-65534, GIDs 0-69999)", id, got, want)
		}
	}
}

func TestCheckContainerUserNS(t *testing.T) {
	pod := &userNS{uids: []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}, gids: []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}}
	ctr := func(opts *runtimeapi.UserNamespace) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: opts}}}}
	}
	same := []*runtimeapi.IDMapping{idmap(0, 65536, 65536)}
	for _, tc := range []struct {
		desc  string
		pod   *userNS
		cfg   *runtimeapi.ContainerConfig
		valid bool
	}{
		{"no options in a userns pod", pod, ctr(nil), true},
		{"the pod's options", pod, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: same, Gids: same}), true},
		{"POD mode without mappings", pod, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}), true},
		{"other mappings", pod, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idmap(0, 131072, 65536)}, Gids: same}), false},
		{"NODE in a userns pod", pod, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}), false},
		{"NODE in a host pod", nil, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}), true},
		{"POD in a host pod", nil, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: same, Gids: same}), false},
		{"CONTAINER", pod, ctr(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}), false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := checkContainerUserNS(tc.pod, tc.cfg)
			if tc.valid != (err == nil) || err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("err = %v, want valid: %v", err, tc.valid)
			}
		})
	}
}

func TestMountIDMappings(t *testing.T) {
	pod := &userNS{uids: []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}, gids: []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}}
	m := []*runtimeapi.IDMapping{idmap(0, 65536, 65536)}
	for _, tc := range []struct {
		desc    string
		pod     *userNS
		mount   *runtimeapi.Mount
		wantErr string
		mapped  bool
	}{
		{"no mappings", pod, &runtimeapi.Mount{ContainerPath: "/v"}, "", false},
		{"mappings", pod, &runtimeapi.Mount{ContainerPath: "/v", UidMappings: m, GidMappings: m}, "", true},
		{"mappings without a user namespace", nil, &runtimeapi.Mount{ContainerPath: "/v", UidMappings: m, GidMappings: m}, "no user namespace", false},
		{"UID mappings only", pod, &runtimeapi.Mount{ContainerPath: "/v", UidMappings: m}, "needs both", false},
		{"empty mapping", pod, &runtimeapi.Mount{ContainerPath: "/v", UidMappings: []*runtimeapi.IDMapping{idmap(0, 1, 0)}, GidMappings: m}, "length 0", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var mnt specs.Mount
			err := mountIDMappings(&mnt, tc.mount, tc.pod)
			if refused(t, err, tc.wantErr) {
				return
			}
			if mapped := len(mnt.UIDMappings) == 1 && len(mnt.GIDMappings) == 1 && mnt.UIDMappings[0].HostID == 65536; mapped != tc.mapped {
				t.Errorf("mount mappings %v %v, want mapped: %v", mnt.UIDMappings, mnt.GIDMappings, tc.mapped)
			}
		})
	}
}

// FuzzPodUserNS: any user namespace options are either refused as
// InvalidArgument or give a user namespace with one mapping each that maps
// container ID 0 within the host's ID space; never a panic.
func FuzzPodUserNS(f *testing.F) {
	f.Add(int32(1), uint32(0), uint32(65536), uint32(65536), uint32(0), uint32(65536), uint32(65536), 1, 1, int32(0))
	f.Add(int32(1), uint32(1), uint32(0), uint32(0), uint32(0), uint32(1<<32-1), uint32(2), 2, 0, int32(2))
	f.Fuzz(func(t *testing.T, mode int32, uc, uh, ul, gc, gh, gl uint32, nu, ng int, net int32) {
		rep := func(n int, c, h, l uint32) []*runtimeapi.IDMapping {
			var out []*runtimeapi.IDMapping
			for i := 0; i < n%4; i++ {
				out = append(out, idmap(c, h, l))
			}
			return out
		}
		cfg := usernsPod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode(mode), Uids: rep(nu, uc, uh, ul), Gids: rep(ng, gc, gh, gl)})
		cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode(net)
		u, err := podUserNS(cfg)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("not InvalidArgument: %v", err)
			}
			return
		}
		if u == nil {
			return
		}
		for _, ms := range [][]specs.LinuxIDMapping{u.uids, u.gids} {
			if len(ms) != 1 || ms[0].ContainerID != 0 || ms[0].Size == 0 || uint64(ms[0].HostID)+uint64(ms[0].Size) > 1<<32-1 {
				t.Fatalf("accepted mappings %+v", ms)
			}
		}
		if !u.maps(0) {
			t.Fatal("accepted a user namespace without container ID 0")
		}
	})
}
