package image

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// userNS starts a process in a new user namespace mapping 0-65535 to
// hostID and returns the namespace's path; the process ends with the test.
func userNS(t *testing.T, hostID int) string {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: m, GidMappings: m}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

func TestPrepareIDMappedRootfs(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := newTestStore(t, Options{})
	img := importImage(t, s, "example.com/idmap:1", testImage(t, v1.Config{},
		testLayer(t, []tarEntry{
			{name: "etc/", typ: tar.TypeDir, mode: 0o755}, {name: "etc/a", body: "a", mode: 0o644},
			{name: "home/", typ: tar.TypeDir, mode: 0o755}, {name: "home/u/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
			{name: "home/u/f", body: "f", mode: 0o600, uid: 1000, gid: 1000},
		}),
	))
	const host = 200000
	merged, err := s.PrepareIDMappedRootfs(ctx, img.ID, "c1", IDMap{UserNS: userNS(t, host), UID: host, GID: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.RemoveRootfs(ctx, "c1") })
	dir := filepath.Dir(merged)
	owner := func(p string) (int, int) {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return int(st.Uid), int(st.Gid)
	}
	// Seen from the host, the image's files belong to the mapped IDs.
	for p, want := range map[string]int{".": host, "etc/a": host, "home/u": host + 1000, "home/u/f": host + 1000} {
		if u, g := owner(filepath.Join(merged, p)); u != want || g != want {
			t.Errorf("%s owned by %d:%d on the host, want %d:%d", p, u, g, want, want)
		}
	}
	// The layer itself is untouched.
	if u, _ := owner(filepath.Join(s.layerPath(s.layers[img.DiffIDs[0]].ID), "etc/a")); u != 0 {
		t.Errorf("the shared layer's etc/a is owned by %d, want 0", u)
	}
	// A copy-up keeps the mapped owner in the writable layer.
	if err := os.Chmod(filepath.Join(merged, "etc/a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(filepath.Join(dir, "upper", "etc/a")); u != host {
		t.Errorf("copied-up etc/a owned by %d, want %d", u, host)
	}
	// The temporary idmapped mounts are gone; only the overlay stays.
	if _, err := os.Lstat(filepath.Join(dir, "idmap")); !os.IsNotExist(err) {
		t.Errorf("idmap dir left: %v", err)
	}
	if mounted, _ := isMounted(filepath.Join(dir, "idmap", "0")); mounted {
		t.Error("an idmapped layer mount is left")
	}

	// Idempotent while mounted; a bad user namespace fails cleanly.
	if again, err := s.PrepareIDMappedRootfs(ctx, img.ID, "c1", IDMap{UserNS: userNS(t, host), UID: host, GID: host}); err != nil || again != merged {
		t.Errorf("second prepare: %q, %v", again, err)
	}
	if _, err := s.PrepareIDMappedRootfs(ctx, img.ID, "c2", IDMap{UserNS: "/nonexistent", UID: host, GID: host}); err == nil {
		t.Error("a missing user namespace was accepted")
	}
	if _, err := os.Lstat(filepath.Join(s.rootfsDir(), "c2")); !os.IsNotExist(err) {
		t.Errorf("failed rootfs left: %v", err)
	}
	if err := s.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
}

func TestCheckIDMapped(t *testing.T) {
	requireRoot(t)
	f, err := os.Open(userNS(t, 300000))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := CheckIDMapped(t.TempDir(), int(f.Fd())); err != nil {
		t.Errorf("idmapped mounts on the test dir's filesystem: %v (kernel or filesystem without them?)", err)
	}
	if err := CheckIDMapped("/proc", int(f.Fd())); err == nil {
		t.Error("procfs took an idmapped mount")
	}
}
