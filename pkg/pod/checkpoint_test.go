package pod

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// An overlay upper directory becomes rootfs-diff.tar: files with content
// and owner, directories, symlinks, hard links once; whiteouts become
// deleted.files entries instead.
func TestWriteRootfsDiff(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: overlayfs whiteouts are 0:0 character devices (run the tests as hack/test.sh does)")
	}
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "etc/app"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "etc/app/conf"), []byte("x=1\n"), 0o640))
	must(os.Chown(filepath.Join(upper, "etc/app/conf"), 1000, 1001))
	must(os.Link(filepath.Join(upper, "etc/app/conf"), filepath.Join(upper, "etc/app/conf.link")))
	must(os.Symlink("conf", filepath.Join(upper, "etc/app/current")))
	must(unix.Mknod(filepath.Join(upper, "etc/passwd"), unix.S_IFCHR, 0))
	must(unix.Mknod(filepath.Join(upper, "etc/app/old"), unix.S_IFCHR, 0))

	dst := filepath.Join(t.TempDir(), "rootfs-diff.tar")
	deleted, err := writeRootfsDiff(upper, dst)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(deleted)
	if want := []string{"etc/app/old", "etc/passwd"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted = %v, want %v", deleted, want)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]*tar.Header{}
	content := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		b, _ := io.ReadAll(tr)
		content[h.Name] = string(b)
	}
	for _, tc := range []struct {
		name     string
		typ      byte
		link     string
		content  string
		uid, gid int
	}{
		{"etc/", tar.TypeDir, "", "", 0, 0},
		{"etc/app/", tar.TypeDir, "", "", 0, 0},
		{"etc/app/conf", tar.TypeReg, "", "x=1\n", 1000, 1001},
		{"etc/app/conf.link", tar.TypeLink, "etc/app/conf", "", 1000, 1001},
		{"etc/app/current", tar.TypeSymlink, "conf", "", 0, 0},
	} {
		h, ok := got[tc.name]
		if !ok {
			t.Errorf("%s not archived (have %v)", tc.name, slices.Sorted(func(yield func(string) bool) {
				for k := range got {
					if !yield(k) {
						return
					}
				}
			}))
			continue
		}
		if h.Typeflag != tc.typ || h.Linkname != tc.link || content[tc.name] != tc.content || h.Uid != tc.uid || h.Gid != tc.gid {
			t.Errorf("%s: type %c link %q content %q owner %d:%d, want %c %q %q %d:%d", tc.name,
				h.Typeflag, h.Linkname, content[tc.name], h.Uid, h.Gid, tc.typ, tc.link, tc.content, tc.uid, tc.gid)
		}
	}
	for _, name := range []string{"etc/passwd", "etc/app/old"} {
		if _, ok := got[name]; ok {
			t.Errorf("whiteout %s archived", name)
		}
	}
}

// writeArchive publishes the archive only when complete, 0600, with only
// the entries that exist; a failure leaves no file behind.
func TestWriteArchive(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "checkpoint"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"checkpoint/inventory.img": "inv", "config.dump": "{}"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(out, "c.tar")
	if err := writeArchive(src, dst, []string{"checkpoint", "config.dump", "deleted.files"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	f, _ := os.Open(dst)
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	if want := []string{"checkpoint/", "checkpoint/inventory.img", "config.dump"}; !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}

	// An entry tar cannot hold (a socket) fails the archive: nothing but the
	// earlier archive stays.
	bad := filepath.Join(out, "bad.tar")
	sock := filepath.Join(src, "checkpoint", "sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if err := writeArchive(src, bad, []string{"checkpoint"}); err == nil {
		t.Fatal("archiving a socket succeeded")
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 || entries[0].Name() != "c.tar" {
		t.Errorf("after a failed archive %s holds %v, want only c.tar", out, entries)
	}
}

// The CRIU configuration names the container's stdio FIFOs as external
// files, in CRIU's key format (hex mnt_id and inode), and nothing else; a
// container whose spec does not name the file is refused.
func TestWriteCRIUConfig(t *testing.T) {
	m := &Manager{cfg: Config{State: t.TempDir()}}
	c := &Container{ID: "c1"}
	spec := func(annotation string) []byte {
		return []byte(`{"annotations": {"` + criuConfigAnnotation + `": "` + annotation + `"}}`)
	}
	if err := os.MkdirAll(m.bundleDir(c.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	// A process with stdout on a FIFO (as the monitor gives containers) and
	// stderr on an anonymous pipe.
	fifo := filepath.Join(t.TempDir(), "stdout")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	_, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command("sleep", "60")
	cmd.Stdout, cmd.Stderr = out, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c.Pid = cmd.Process.Pid

	if err := m.writeCRIUConfig(c, spec("/elsewhere.conf")); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("a spec naming another CRIU config: %v, want FailedPrecondition", err)
	}
	if err := m.writeCRIUConfig(c, spec(m.criuConfigPath(c.ID))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(m.criuConfigPath(c.ID))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(fifo, &st); err != nil {
		t.Fatal(err)
	}
	mnt, err := fdMountID(os.Getpid(), int(out.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("external file[%x:%x]\n", mnt, st.Ino); string(got) != want {
		t.Errorf("CRIU config %q, want %q", got, want)
	}
}
