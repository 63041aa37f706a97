package pause

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecNamespaces(t *testing.T) {
	for _, tc := range []struct {
		desc string
		cfg  Config
		want map[specs.LinuxNamespaceType]string // type -> path ("" = new); absent = host's
	}{
		{"pod network, own IPC and PID", Config{NetNS: "/run/netns/p"}, map[specs.LinuxNamespaceType]string{
			specs.NetworkNamespace: "/run/netns/p", specs.UTSNamespace: "", specs.IPCNamespace: "", specs.PIDNamespace: "", specs.MountNamespace: ""}},
		{"host network: no network or UTS namespace", Config{HostNetwork: true}, map[specs.LinuxNamespaceType]string{
			specs.IPCNamespace: "", specs.PIDNamespace: "", specs.MountNamespace: ""}},
		{"host IPC and PID", Config{NetNS: "/run/netns/p", HostIPC: true, HostPID: true}, map[specs.LinuxNamespaceType]string{
			specs.NetworkNamespace: "/run/netns/p", specs.UTSNamespace: "", specs.MountNamespace: ""}},
		{"the pod's user namespace, by its pin", Config{NetNS: "/run/netns/p", UserNS: "/run/userns/p"}, map[specs.LinuxNamespaceType]string{
			specs.UserNamespace: "/run/userns/p", specs.NetworkNamespace: "/run/netns/p", specs.UTSNamespace: "", specs.IPCNamespace: "",
			specs.PIDNamespace: "", specs.MountNamespace: ""}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tc.cfg.Rootfs, tc.cfg.Args, tc.cfg.UID, tc.cfg.GID, tc.cfg.SandboxID = "/r", Args, UID, UID, "sb"
			s, err := Spec(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := map[specs.LinuxNamespaceType]string{}
			for _, ns := range s.Linux.Namespaces {
				got[ns.Type] = ns.Path
			}
			for typ, path := range tc.want {
				if p, ok := got[typ]; !ok || p != path {
					t.Errorf("namespace %s: %q (present %v), want %q", typ, p, ok, path)
				}
			}
			for typ := range got {
				if _, ok := tc.want[typ]; !ok && typ != specs.CgroupNamespace {
					t.Errorf("namespace %s should be the host's", typ)
				}
			}
			if s.Process.User.UID != UID || s.Process.Capabilities != nil && len(s.Process.Capabilities.Bounding) != 0 ||
				!s.Process.NoNewPrivileges || !s.Root.Readonly || s.Annotations["io.kubernetes.cri.container-type"] != "sandbox" {
				t.Errorf("not an unprivileged read-only sandbox container: user %+v caps %+v nnp %v ro %v annotations %v",
					s.Process.User, s.Process.Capabilities, s.Process.NoNewPrivileges, s.Root.Readonly, s.Annotations)
			}
		})
	}
}

func TestPrepareRootfs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cri-shim-pause")
	if err := os.WriteFile(bin, []byte("pause program"), 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs, err := PrepareRootfs(filepath.Join(dir, "state"), bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pause", "dev", "proc", "sys", "etc"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("rootfs lacks %s: %v", p, err)
		}
	}
	// A new program (another size) replaces the installed one.
	if err := os.WriteFile(bin, []byte("a newer pause program"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareRootfs(filepath.Join(dir, "state"), bin); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(rootfs, "pause")); string(data) != "a newer pause program" {
		t.Errorf("installed program %q, want the new one", data)
	}
	if _, err := PrepareRootfs(filepath.Join(dir, "other"), filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing pause program was accepted")
	}
}
