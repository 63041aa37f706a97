package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

func importImage(t *testing.T, s *Store, ref string, img v1.Image) *Image {
	t.Helper()
	imgs, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, map[string]v1.Image{ref: img})))
	if err != nil {
		t.Fatal(err)
	}
	return imgs[0]
}

func TestRootfs(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := newTestStore(t, Options{})
	img := importImage(t, s, "example.com/rootfs:1", testImage(t, v1.Config{},
		testLayer(t, []tarEntry{
			{name: "etc/", typ: tar.TypeDir}, {name: "etc/a", body: "a"}, {name: "etc/b", body: "b"},
			{name: "dir/", typ: tar.TypeDir}, {name: "dir/x", body: "x"},
		}),
		testLayer(t, []tarEntry{
			{name: "etc/.wh.b"}, {name: "etc/c", body: "c"},
			{name: "dir/.wh..wh..opq"}, {name: "dir/y", body: "y"},
		}),
	))
	other := importImage(t, s, "example.com/other:1", testImage(t, v1.Config{}, testLayer(t, []tarEntry{{name: "o", body: "o"}})))

	merged, err := s.PrepareRootfs(ctx, img.ID, "c1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(merged)
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(merged, p)); return err == nil }
	for p, want := range map[string]bool{"etc/a": true, "etc/c": true, "etc/b": false, "dir/x": false, "dir/y": true} {
		if exists(p) != want {
			t.Errorf("%s exists = %v, want %v", p, !want, want)
		}
	}
	if err := os.WriteFile(filepath.Join(merged, "new.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "upper", "new.txt")); err != nil || string(data) != "hello" {
		t.Errorf("write not in upper: %q %v", data, err)
	}
	if err := os.Remove(filepath.Join(merged, "etc/a")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "upper/etc/a"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("removing a lower file left no whiteout in upper: %v", err)
	}
	if exists("etc/a") {
		t.Errorf("removed lower file still visible")
	}
	if b, inodes, err := s.RootfsUsage("c1"); err != nil || b == 0 || inodes < 3 {
		t.Errorf("RootfsUsage = %d, %d, %v", b, inodes, err)
	}

	// Idempotent, and mounted once.
	again, err := s.PrepareRootfs(ctx, "example.com/rootfs:1", "c1")
	if err != nil || again != merged {
		t.Fatalf("prepare again: %q %v", again, err)
	}
	if n := len(mountsUnder(t, merged)); n != 1 {
		t.Errorf("%d mounts on merged, want 1", n)
	}
	for _, tc := range []struct {
		image, key string
		want       error
	}{
		{other.ID, "c1", errdefs.ErrAlreadyExists},
		{img.ID, "../x", errdefs.ErrInvalidArgument},
		{img.ID, "", errdefs.ErrInvalidArgument},
		{"example.com/absent:1", "c2", errdefs.ErrNotFound},
	} {
		if _, err := s.PrepareRootfs(ctx, tc.image, tc.key); !errdefsIs(err, tc.want) {
			t.Errorf("PrepareRootfs(%s, %q) = %v, want %v", tc.image, tc.key, err, tc.want)
		}
	}

	// After a "reboot": dirs kept, mount gone; the store reloads and
	// mounts again over the same upper.
	if err := s.UnmountRootfs("c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.UnmountRootfs("c1"); err != nil {
		t.Fatalf("unmount twice: %v", err)
	}
	if n := len(mountsUnder(t, merged)); n != 0 {
		t.Fatalf("still mounted after UnmountRootfs")
	}
	s2, err := New(ctx, Options{Root: s.root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.PrepareRootfs(ctx, img.ID, "c1"); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(merged, "new.txt")); err != nil || string(data) != "hello" {
		t.Errorf("upper lost across remount: %q %v", data, err)
	}

	// The image goes; its layers stay under the rootfs until it goes too.
	if err := s2.Remove(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	if len(s2.layers) != 3 || !exists("etc/c") {
		t.Errorf("layers of a prepared rootfs removed with the image: %d layers left", len(s2.layers))
	}
	if err := s2.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, s.root); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Errorf("rootfs dir left")
	}
	if len(s2.layers) != 1 {
		t.Errorf("%d layers left, want only the other image's", len(s2.layers))
	}
	if err := s2.RemoveRootfs(ctx, "c1"); err != nil {
		t.Errorf("remove twice: %v", err)
	}
	if _, _, err := s2.RootfsUsage("c1"); !errdefs.IsNotFound(err) {
		t.Errorf("usage of removed rootfs: %v", err)
	}
	assertNoPartial(t, s2)
}

func errdefsIs(err, target error) bool {
	switch target {
	case errdefs.ErrAlreadyExists:
		return errdefs.IsAlreadyExists(err)
	case errdefs.ErrInvalidArgument:
		return errdefs.IsInvalidArgument(err)
	case errdefs.ErrNotFound:
		return errdefs.IsNotFound(err)
	}
	return false
}

// TestRootfsManyLayers mounts more layers than fit in one mount(2) option
// page, and an image with no layers at all.
func TestRootfsManyLayers(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := newTestStore(t, Options{})
	const n = 130
	var layers []v1.Layer
	for i := range n {
		layers = append(layers, testLayer(t, []tarEntry{{name: fmt.Sprintf("l%03d", i), body: "x"}}))
	}
	img := importImage(t, s, "example.com/tall:1", testImage(t, v1.Config{}, layers...))
	var optLen int
	for _, d := range img.DiffIDs {
		optLen += len(s.layerPath(s.layers[d].ID)) + 1
	}
	if optLen < os.Getpagesize() {
		t.Fatalf("lowerdir would be %d bytes only: the test must exceed a page", optLen)
	}
	merged, err := s.PrepareRootfs(ctx, img.ID, "tall")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"l000", fmt.Sprintf("l%03d", n-1)} {
		if _, err := os.Stat(filepath.Join(merged, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	empty := importImage(t, s, "example.com/scratch:1", testImage(t, v1.Config{Cmd: []string{"nothing"}}))
	em, err := s.PrepareRootfs(ctx, empty.ID, "scratch")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(em, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tall", "scratch"} {
		if err := s.RemoveRootfs(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if m := mountsUnder(t, s.root); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}

	// The mount(2) fallback: fine for a few layers, a clear error past a
	// page.
	lower, upper, work, target := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	if err := legacyMountOverlay([]string{lower}, upper, work, target); err != nil {
		t.Fatal(err)
	}
	if err := unmountAll(target); err != nil {
		t.Fatal(err)
	}
	long := make([]string, 200)
	for i := range long {
		long[i] = lower + "/" + strings.Repeat("x", 30)
	}
	if err := legacyMountOverlay(long, upper, work, target); !errdefs.IsResourceExhausted(err) {
		t.Errorf("too many layers for mount(2): %v", err)
	}
}
