package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestExpandSlice(t *testing.T) {
	for _, tc := range []struct {
		slice, want string
		wantErr     bool
	}{
		{slice: "-.slice", want: "/"},
		{slice: "system.slice", want: "/system.slice"},
		{slice: "kubepods.slice", want: "/kubepods.slice"},
		{slice: "kubepods-burstable-pod1234_5678.slice", want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"},
		{slice: "a-b-c.slice", want: "/a.slice/a-b.slice/a-b-c.slice"},
		{slice: "kubepods", wantErr: true},
		{slice: ".slice", wantErr: true},
		{slice: "a--b.slice", wantErr: true},
		{slice: "-a.slice", wantErr: true},
		{slice: "a-.slice", wantErr: true},
		{slice: "a/b.slice", wantErr: true},
	} {
		t.Run(tc.slice, func(t *testing.T) {
			got, err := ExpandSlice(tc.slice)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ExpandSlice(%q) error = %v, want error %v", tc.slice, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ExpandSlice(%q) = %q, want %q", tc.slice, got, tc.want)
			}
		})
	}
}

// TestCgroupPaths checks the one path helper under both drivers: what the
// OCI runtime is told, where the cgroup is in the filesystem, and where
// the pod's cgroup is.
func TestCgroupPaths(t *testing.T) {
	const id = "0123abcd"
	for _, tc := range []struct {
		desc                     string
		cg                       Cgroup
		wantOCI, wantPath, wantP string
		wantErr                  bool
	}{
		{
			desc:    "cgroupfs, kubelet's pod cgroup",
			cg:      Cgroup{Driver: CgroupfsDriver, Parent: "/kubepods/burstable/pod42", ID: id},
			wantOCI: "/kubepods/burstable/pod42/" + id, wantPath: "/kubepods/burstable/pod42/" + id, wantP: "/kubepods/burstable/pod42",
		},
		{
			desc:    "cgroupfs, trailing slash",
			cg:      Cgroup{Driver: CgroupfsDriver, Parent: "/kubepods/pod42/", ID: id},
			wantOCI: "/kubepods/pod42/" + id, wantPath: "/kubepods/pod42/" + id, wantP: "/kubepods/pod42",
		},
		{
			desc:    "cgroupfs, no parent: cri-shim's default",
			cg:      Cgroup{Driver: CgroupfsDriver, ID: id},
			wantOCI: "/cri-shim/" + id, wantPath: "/cri-shim/" + id, wantP: "/cri-shim",
		},
		{
			desc:    "empty driver is cgroupfs (old records)",
			cg:      Cgroup{Parent: "/test", ID: id},
			wantOCI: "/test/" + id, wantPath: "/test/" + id, wantP: "/test",
		},
		{
			desc:    "cgroupfs, root parent",
			cg:      Cgroup{Driver: CgroupfsDriver, Parent: "/", ID: id},
			wantOCI: "/" + id, wantPath: "/" + id, wantP: "/",
		},
		{
			desc:    "cgroupfs, relative parent",
			cg:      Cgroup{Driver: CgroupfsDriver, Parent: "kubepods/pod42", ID: id},
			wantOCI: "/kubepods/pod42/" + id, wantPath: "/kubepods/pod42/" + id, wantP: "/kubepods/pod42",
		},
		{
			desc:    "cgroupfs, parent escaping the tree",
			cg:      Cgroup{Driver: CgroupfsDriver, Parent: "/kubepods/../../etc", ID: id},
			wantErr: true,
		},
		{
			desc:     "systemd, kubelet's expanded pod slice",
			cg:       Cgroup{Driver: SystemdDriver, Parent: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod42.slice", ID: id},
			wantOCI:  "kubepods-burstable-pod42.slice:cri-shim:" + id,
			wantPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod42.slice/cri-shim-" + id + ".scope",
			wantP:    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod42.slice",
		},
		{
			desc:     "systemd, slice by name",
			cg:       Cgroup{Driver: SystemdDriver, Parent: "kubepods-besteffort-pod7.slice", ID: id},
			wantOCI:  "kubepods-besteffort-pod7.slice:cri-shim:" + id,
			wantPath: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod7.slice/cri-shim-" + id + ".scope",
			wantP:    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod7.slice",
		},
		{
			desc:     "systemd, critest's parent",
			cg:       Cgroup{Driver: SystemdDriver, Parent: "/test.slice", ID: id},
			wantOCI:  "test.slice:cri-shim:" + id,
			wantPath: "/test.slice/cri-shim-" + id + ".scope",
			wantP:    "/test.slice",
		},
		{
			desc:     "systemd, no parent: system.slice",
			cg:       Cgroup{Driver: SystemdDriver, ID: id},
			wantOCI:  "system.slice:cri-shim:" + id,
			wantPath: "/system.slice/cri-shim-" + id + ".scope",
			wantP:    "/system.slice",
		},
		{
			desc:    "systemd, a cgroupfs parent",
			cg:      Cgroup{Driver: SystemdDriver, Parent: "/kubepods/burstable/pod42", ID: id},
			wantErr: true,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			oci, err := tc.cg.OCIPath()
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidCgroupParent) {
					t.Fatalf("OCIPath() error = %v, want ErrInvalidCgroupParent", err)
				}
				if _, err := tc.cg.Path(); !errors.Is(err, ErrInvalidCgroupParent) {
					t.Errorf("Path() error = %v, want ErrInvalidCgroupParent", err)
				}
				if _, err := tc.cg.Dirs(t.TempDir()); !errors.Is(err, ErrInvalidCgroupParent) {
					t.Errorf("Dirs() error = %v, want ErrInvalidCgroupParent", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OCIPath() error = %v", err)
			}
			if oci != tc.wantOCI {
				t.Errorf("OCIPath() = %q, want %q", oci, tc.wantOCI)
			}
			if p, err := tc.cg.Path(); err != nil || p != tc.wantPath {
				t.Errorf("Path() = %q, %v, want %q", p, err, tc.wantPath)
			}
			if p, err := tc.cg.ParentPath(); err != nil || p != tc.wantP {
				t.Errorf("ParentPath() = %q, %v, want %q", p, err, tc.wantP)
			}
		})
	}
}

// TestCgroupDirs checks the filesystem directories on a v1 (one per
// hierarchy, symlinked co-mounts once) and a v2 (one) layout, for both
// drivers.
func TestCgroupDirs(t *testing.T) {
	v1 := t.TempDir()
	for _, d := range []string{"cpu,cpuacct", "memory", "pids", "systemd", "unified"} {
		if err := os.Mkdir(filepath.Join(v1, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"cpu", "cpuacct"} {
		if err := os.Symlink("cpu,cpuacct", filepath.Join(v1, l)); err != nil {
			t.Fatal(err)
		}
	}
	v2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sd := Cgroup{Driver: SystemdDriver, Parent: "/kubepods.slice/kubepods-pod1.slice", ID: "c1"}
	fs := Cgroup{Driver: CgroupfsDriver, Parent: "/kubepods/pod1", ID: "c1"}
	const scope = "/kubepods.slice/kubepods-pod1.slice/cri-shim-c1.scope"
	for _, tc := range []struct {
		desc    string
		cg      Cgroup
		root    string
		want    []string
		wantMem string
	}{
		{"v1 cgroupfs", fs, v1, []string{"cpu,cpuacct", "memory", "pids", "systemd", "unified"}, "memory/kubepods/pod1/c1"},
		{"v1 systemd", sd, v1, []string{"cpu,cpuacct", "memory", "pids", "systemd", "unified"}, "memory" + scope},
		{"v2 cgroupfs", fs, v2, []string{""}, "kubepods/pod1/c1"},
		{"v2 systemd", sd, v2, []string{""}, scope[1:]},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p, _ := tc.cg.Path()
			var want []string
			for _, h := range tc.want {
				want = append(want, filepath.Join(tc.root, h, p))
			}
			got, err := tc.cg.Dirs(tc.root)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("Dirs() = %q, want %q", got, want)
			}
			mem, err := tc.cg.Dir(tc.root, "memory")
			if err != nil || mem != filepath.Join(tc.root, tc.wantMem) {
				t.Errorf("Dir(memory) = %q, %v, want %q", mem, err, filepath.Join(tc.root, tc.wantMem))
			}
		})
	}
}

func TestGlobalArgs(t *testing.T) {
	for _, tc := range []struct {
		r    Runc
		want []string
	}{
		{Runc{Root: "/run/x/runc"}, []string{"--root", "/run/x/runc"}},
		{Runc{Root: "/run/x/runc", SystemdCgroup: true}, []string{"--root", "/run/x/runc", "--systemd-cgroup"}},
	} {
		if got := tc.r.GlobalArgs(); !slices.Equal(got, tc.want) {
			t.Errorf("GlobalArgs() = %q, want %q", got, tc.want)
		}
	}
}
