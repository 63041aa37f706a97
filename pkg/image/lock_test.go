package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// How long a read may take while slow work is blocked: lookups are map
// operations, so this is generous even under -race on a loaded machine.
const readDeadline = 5 * time.Second

// blocker is a Store.testHook that stops the first caller at point until
// released, and lets every other call through.
type blocker struct {
	point   string
	hit     atomic.Bool // not a sync.Once: its later callers wait for the first
	entered chan struct{}
	release chan struct{}
}

func newBlocker(point string) *blocker {
	return &blocker{point: point, entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *blocker) hook(point string) {
	if point != b.point {
		return
	}
	if b.hit.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.release
	}
}

// run starts op, waits until it is blocked at the point, and returns a
// channel that yields op's error once released.
func (b *blocker) run(t *testing.T, op func() error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case <-b.entered:
	case err := <-done:
		t.Fatalf("operation finished without reaching %q: %v", b.point, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("operation never reached %q", b.point)
	}
	return done
}

func wait(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not finish", what)
	}
}

// within runs fn and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Errorf("%s waited more than %s", what, d)
	}
}

// lockFixture is a store with two images and a prepared rootfs "c0" of
// the first.
type lockFixture struct {
	s          *Store
	img, other *Image
}

func newLockFixture(t *testing.T) lockFixture {
	t.Helper()
	s := newTestStore(t, Options{})
	img := importImage(t, s, "example.com/locks:1", testImage(t, v1.Config{Cmd: []string{"locks"}},
		testLayer(t, []tarEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/hostname", body: "locks"}})))
	other := importImage(t, s, "example.com/other:1", testImage(t, v1.Config{Cmd: []string{"other"}},
		testLayer(t, []tarEntry{{name: "other", body: "other"}})))
	if _, err := s.PrepareRootfs(context.Background(), img.ID, "c0"); err != nil {
		t.Fatal(err)
	}
	return lockFixture{s: s, img: img, other: other}
}

// TestReadsDoNotWait blocks each kind of slow mutation where its slow work
// starts, with its locks held, and checks that the lookups CRI makes
// (ImageStatus, ListImages, ImageFsInfo) answer meanwhile. With one lock
// held across the work, as before, they would wait until it is released.
func TestReadsDoNotWait(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	tests := []struct {
		desc  string
		point string
		op    func(f lockFixture) error
	}{
		{desc: "overlay mount", point: "mount", op: func(f lockFixture) error {
			_, err := f.s.PrepareRootfs(ctx, f.img.ID, "c1")
			return err
		}},
		{desc: "unmount", point: "unmount", op: func(f lockFixture) error { return f.s.UnmountRootfs("c0") }},
		{desc: "rootfs removal", point: "unmount", op: func(f lockFixture) error { return f.s.RemoveRootfs(ctx, "c0") }},
		{desc: "record fsync of Pin", point: "record", op: func(f lockFixture) error { return f.s.Pin(f.img.ID) }},
		{desc: "record fsync of an import", point: "record", op: func(f lockFixture) error {
			_, err := f.s.Import(ctx, bytes.NewReader(dockerArchive(t, map[string]v1.Image{
				"example.com/third:1": testImage(t, v1.Config{Cmd: []string{"third"}}, baseLayer(t)),
			})))
			return err
		}},
		{desc: "collection after an image removal", point: "gc", op: func(f lockFixture) error { return f.s.Remove(ctx, f.other.ID) }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			f := newLockFixture(t)
			b := newBlocker(tc.point)
			f.s.testHook = b.hook
			done := b.run(t, func() error { return tc.op(f) })

			within(t, readDeadline, "List", func() error { f.s.List(); return nil })
			within(t, readDeadline, "Get by name", func() error { _, err := f.s.Get("example.com/locks:1"); return err })
			within(t, readDeadline, "Get by ID", func() error { _, err := f.s.Get(f.img.ID); return err })
			within(t, readDeadline, "Get by ID prefix", func() error { _, err := f.s.Get(f.img.ID[7:19]); return err })
			within(t, readDeadline, "FsUsage", func() error { _, err := f.s.FsUsage(); return err })

			close(b.release)
			wait(t, tc.desc, done)
		})
	}
}

// TestCollectDuringMount removes the image of a rootfs while the rootfs is
// being mounted: the collection that follows must keep the layers the mount
// uses, and they go with the rootfs.
func TestCollectDuringMount(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	f := newLockFixture(t)
	// The image goes with c0's rootfs out of the way, so that only the
	// mount in progress holds its layers.
	if err := f.s.RemoveRootfs(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	b := newBlocker("mount")
	f.s.testHook = b.hook
	var merged string
	done := b.run(t, func() (err error) {
		merged, err = f.s.PrepareRootfs(ctx, f.img.ID, "c1")
		return err
	})
	within(t, readDeadline, "Remove of the image being mounted", func() error { return f.s.Remove(ctx, f.img.ID) })
	close(b.release)
	wait(t, "PrepareRootfs", done)
	if data, err := os.ReadFile(filepath.Join(merged, "etc/hostname")); err != nil || string(data) != "locks" {
		t.Fatalf("rootfs content after a collection during its mount: %q, %v", data, err)
	}
	if n := len(f.s.layers); n != 2 {
		t.Errorf("%d layers, want 2: the mounted image's and the other image's", n)
	}
	if err := f.s.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.s.layers); n != 1 {
		t.Errorf("%d layers after RemoveRootfs, want only the other image's", n)
	}
	assertNoPartial(t, f.s)
}

// TestRootfsKeyLock checks that operations on one rootfs key are serialised
// while those on another key proceed.
func TestRootfsKeyLock(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	f := newLockFixture(t)
	b := newBlocker("mount")
	f.s.testHook = b.hook
	done := b.run(t, func() error {
		_, err := f.s.PrepareRootfs(ctx, f.img.ID, "c1")
		return err
	})
	// Another key mounts (the blocker stops only the first mount).
	within(t, readDeadline, "PrepareRootfs of another key", func() error {
		_, err := f.s.PrepareRootfs(ctx, f.other.ID, "c2")
		return err
	})
	// The same key waits for the mount in progress.
	removed := make(chan error, 1)
	go func() { removed <- f.s.RemoveRootfs(ctx, "c1") }()
	select {
	case err := <-removed:
		t.Fatalf("RemoveRootfs of a rootfs being mounted did not wait: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(b.release)
	wait(t, "PrepareRootfs", done)
	wait(t, "RemoveRootfs", removed)
	dir, _, _, merged := f.s.rootfsPaths("c1")
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("rootfs dir left after RemoveRootfs: %v", err)
	}
	for _, m := range mountsUnder(t, f.s.root) {
		if strings.HasPrefix(m, merged) {
			t.Errorf("rootfs still mounted after RemoveRootfs: %s", m)
		}
	}
	for _, k := range []string{"c0", "c2"} {
		if err := f.s.RemoveRootfs(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.s.rootfsLocks.Held(); n != 0 {
		t.Errorf("%d rootfs locks left, want none", n)
	}
}

// TestLeaseDuringCollection takes a lease on a blob while a collection that
// found it unused is between its snapshot and its deletions: the lease waits,
// so a blob found present after leasing it is never deleted afterwards.
func TestLeaseDuringCollection(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, Options{})
	img := importImage(t, s, "example.com/gone:1", testImage(t, v1.Config{Cmd: []string{"gone"}}, baseLayer(t)))
	b := newBlocker("gc")
	s.testHook = b.hook
	done := b.run(t, func() error { return s.Remove(ctx, img.ID) })

	l := s.newLease()
	defer l.release()
	leased := make(chan bool, 1)
	go func() {
		l.add("blob:" + img.ID)
		leased <- s.content.has(img.ID) // what a pull would check next
	}()
	select {
	case <-leased:
		t.Fatal("lease taken during a collection did not wait for it")
	case <-time.After(100 * time.Millisecond):
	}
	close(b.release)
	wait(t, "Remove", done)
	if present := <-leased; present && !s.content.has(img.ID) {
		t.Fatal("blob found present after leasing it, then deleted by the collection")
	}
}

// TestPrepareRootfsOverUnreadable checks that PrepareRootfs refuses a key
// whose dir exists without a readable record, leaving the dir and its
// registration as they were, and that removing it turns layer collection
// back on.
func TestPrepareRootfsOverUnreadable(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, Options{})
	img := importImage(t, s, "example.com/x:1", testImage(t, v1.Config{}, baseLayer(t)))
	dir, upper, _, _ := s.rootfsPaths("broken")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Options{Root: s.root})
	if err != nil {
		t.Fatal(err)
	}
	if !s.layerGCOff {
		t.Fatal("layer collection on with an unreadable rootfs record")
	}
	if _, err := s.PrepareRootfs(ctx, img.ID, "broken"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("PrepareRootfs over an unreadable rootfs: %v, want AlreadyExists", err)
	}
	if _, err := os.Stat(upper); err != nil {
		t.Errorf("the unreadable rootfs was touched: %v", err)
	}
	if len(s.rootfs) != 0 {
		t.Errorf("rootfs registered after a failed prepare: %v", s.rootfs)
	}
	if err := s.RemoveRootfs(ctx, "broken"); err != nil {
		t.Fatal(err)
	}
	if s.layerGCOff {
		t.Error("layer collection still off after the unreadable rootfs went")
	}
}
