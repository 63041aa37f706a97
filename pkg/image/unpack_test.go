package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// tarEntry describes one crafted tar entry for tests.
type tarEntry struct {
	name   string
	typ    byte
	body   string
	link   string
	mode   int64
	uid    int
	gid    int
	major  int64
	minor  int64
	xattrs map[string]string
}

var testMtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: mode, Uid: e.uid, Gid: e.gid,
			Devmajor: e.major, Devminor: e.minor, ModTime: testMtime, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if len(e.xattrs) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				hdr.PAXRecords[paxXattrPrefix+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a temp dir holding the layer dir and an "outside" dir with a
// canary; check fails the test if anything else appeared or changed.
type sandbox struct {
	parent, layer, outside string
}

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	parent := t.TempDir()
	s := sandbox{parent: parent, layer: filepath.Join(parent, "layer"), outside: filepath.Join(parent, "outside")}
	for _, d := range []string{s.layer, s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "file"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s sandbox) check(t testing.TB) {
	t.Helper()
	names := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	if got := names(s.parent); !slices.Equal(got, []string{"layer", "outside"}) {
		t.Fatalf("parent dir holds %v, want only layer and outside", got)
	}
	if got := names(s.outside); !slices.Equal(got, []string{"file"}) {
		t.Fatalf("outside dir holds %v, want only file", got)
	}
	fi, err := os.Lstat(filepath.Join(s.outside, "file"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Fatalf("canary changed: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(filepath.Join(s.outside, "file")); string(data) != "canary" {
		t.Fatalf("canary content changed: %q", data)
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, chown, trusted xattrs)")
	}
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func TestUnpack(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		desc    string
		entries func(s sandbox) []tarEntry
		wantErr bool
		check   func(t *testing.T, s sandbox)
	}{
		{
			desc: "files dirs modes owners times",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{
					{name: "bin/", typ: tar.TypeDir, mode: 0o755},
					{name: "bin/su", body: "su", mode: 0o4755, uid: 0, gid: 0},
					{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
					{name: "home/u/f", body: "hi", mode: 0o640, uid: 1000, gid: 1001},
					{name: "sgid", body: "", mode: 0o2711, uid: 5, gid: 6},
				}
			},
			check: func(t *testing.T, s sandbox) {
				st := lstat(t, filepath.Join(s.layer, "bin/su"))
				if st.Mode&0o7777 != 0o4755 {
					t.Errorf("su mode %o", st.Mode&0o7777)
				}
				if st := lstat(t, filepath.Join(s.layer, "tmp")); st.Mode&0o7777 != 0o1777 {
					t.Errorf("tmp mode %o", st.Mode&0o7777)
				}
				st = lstat(t, filepath.Join(s.layer, "home/u/f"))
				if st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o777 != 0o640 {
					t.Errorf("f uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o777)
				}
				if st := lstat(t, filepath.Join(s.layer, "sgid")); st.Uid != 5 || st.Gid != 6 || st.Mode&0o7777 != 0o2711 {
					t.Errorf("sgid uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o7777)
				}
				if st.Mtim.Sec != testMtime.Unix() {
					t.Errorf("mtime %d", st.Mtim.Sec)
				}
				if st := lstat(t, filepath.Join(s.layer, "bin")); st.Mtim.Sec != testMtime.Unix() {
					t.Errorf("dir mtime %d, want %d", st.Mtim.Sec, testMtime.Unix())
				}
			},
		},
		{
			desc: "dot-dot traversal stays inside",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{{name: "../../evil", body: "x"}, {name: "a/../../outside/file", body: "x"}}
			},
			check: func(t *testing.T, s sandbox) {
				mustExist(t, filepath.Join(s.layer, "evil"))
				mustExist(t, filepath.Join(s.layer, "outside/file"))
			},
		},
		{
			desc:    "absolute path stays inside",
			entries: func(sandbox) []tarEntry { return []tarEntry{{name: "/etc/passwd", body: "root"}} },
			check: func(t *testing.T, s sandbox) {
				mustExist(t, filepath.Join(s.layer, "etc/passwd"))
			},
		},
		{
			desc: "absolute symlink then write through it",
			entries: func(s sandbox) []tarEntry {
				return []tarEntry{{name: "link", typ: tar.TypeSymlink, link: s.outside}, {name: "link/evil", body: "x"}}
			},
			wantErr: true,
		},
		{
			desc: "relative symlink escaping then write through it",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{{name: "up", typ: tar.TypeSymlink, link: "../outside"}, {name: "up/evil", body: "x"}}
			},
			wantErr: true,
		},
		{
			desc: "symlink to outside file then write the symlink's name",
			entries: func(s sandbox) []tarEntry {
				return []tarEntry{
					{name: "s", typ: tar.TypeSymlink, link: filepath.Join(s.outside, "file")},
					{name: "s", body: "replaced", mode: 0o600},
				}
			},
			check: func(t *testing.T, s sandbox) {
				if data, _ := os.ReadFile(filepath.Join(s.layer, "s")); string(data) != "replaced" {
					t.Errorf("s = %q", data)
				}
			},
		},
		{
			desc: "symlink inside the layer is followed for parents",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{
					{name: "usr/lib/", typ: tar.TypeDir},
					{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
					{name: "lib/x.so", body: "so"},
				}
			},
			check: func(t *testing.T, s sandbox) {
				mustExist(t, filepath.Join(s.layer, "usr/lib/x.so"))
				if st := lstat(t, filepath.Join(s.layer, "lib")); st.Mode&unix.S_IFMT != unix.S_IFLNK {
					t.Errorf("lib is not a symlink")
				}
			},
		},
		{
			desc:    "hardlink to outside",
			entries: func(sandbox) []tarEntry { return []tarEntry{{name: "h", typ: tar.TypeLink, link: "../outside/file"}} },
			wantErr: true,
		},
		{
			desc: "hardlink to absolute path of outside",
			entries: func(s sandbox) []tarEntry {
				return []tarEntry{{name: "h", typ: tar.TypeLink, link: filepath.Join(s.outside, "file")}}
			},
			wantErr: true,
		},
		{
			desc: "hardlink to a symlink pointing outside links the symlink",
			entries: func(s sandbox) []tarEntry {
				return []tarEntry{
					{name: "s", typ: tar.TypeSymlink, link: filepath.Join(s.outside, "file")},
					{name: "h", typ: tar.TypeLink, link: "s"},
				}
			},
			check: func(t *testing.T, s sandbox) {
				st := lstat(t, filepath.Join(s.layer, "h"))
				if st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Nlink != 2 {
					t.Errorf("h mode %o nlink %d", st.Mode, st.Nlink)
				}
			},
		},
		{
			desc: "hardlink through a symlinked dir pointing outside",
			entries: func(s sandbox) []tarEntry {
				return []tarEntry{
					{name: "d", typ: tar.TypeSymlink, link: s.outside},
					{name: "h", typ: tar.TypeLink, link: "d/file"},
				}
			},
			wantErr: true,
		},
		{
			desc: "hardlink within the layer",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{{name: "bin/busybox", body: "bb", mode: 0o755}, {name: "bin/sh", typ: tar.TypeLink, link: "/bin/busybox"}}
			},
			check: func(t *testing.T, s sandbox) {
				a, b := lstat(t, filepath.Join(s.layer, "bin/busybox")), lstat(t, filepath.Join(s.layer, "bin/sh"))
				if a.Ino != b.Ino || a.Nlink != 2 {
					t.Errorf("not one inode: %d %d nlink %d", a.Ino, b.Ino, a.Nlink)
				}
			},
		},
		{
			desc: "whiteout with traversal lands at the root",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{{name: "../.wh.x", body: ""}, {name: "d/../../../.wh.outside", body: ""}}
			},
			check: func(t *testing.T, s sandbox) {
				for _, n := range []string{"x", "outside"} {
					st := lstat(t, filepath.Join(s.layer, n))
					if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
						t.Errorf("%s: mode %o rdev %d, want whiteout", n, st.Mode, st.Rdev)
					}
				}
			},
		},
		{
			desc: "whiteout and opaque dir",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{
					{name: "etc/", typ: tar.TypeDir},
					{name: "etc/.wh.motd"},
					{name: "var/.wh..wh..opq"},
					{name: "var/", typ: tar.TypeDir, mode: 0o750},
					{name: ".wh..wh.plnk"}, // AUFS bookkeeping: ignored
				}
			},
			check: func(t *testing.T, s sandbox) {
				if st := lstat(t, filepath.Join(s.layer, "etc/motd")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
					t.Errorf("motd not a whiteout")
				}
				buf := make([]byte, 8)
				n, err := unix.Lgetxattr(filepath.Join(s.layer, "var"), opaqueXattr, buf)
				if err != nil || string(buf[:n]) != "y" {
					t.Errorf("opaque xattr %q %v", buf[:n], err)
				}
				if st := lstat(t, filepath.Join(s.layer, "var")); st.Mode&0o777 != 0o750 {
					t.Errorf("var mode %o", st.Mode&0o777)
				}
				if _, err := os.Lstat(filepath.Join(s.layer, ".wh..wh.plnk")); err == nil {
					t.Errorf("aufs marker created")
				}
			},
		},
		{
			desc: "device nodes and fifo",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{
					{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
					{name: "dev/loop0", typ: tar.TypeBlock, major: 7, minor: 0, mode: 0o660},
					{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
				}
			},
			check: func(t *testing.T, s sandbox) {
				st := lstat(t, filepath.Join(s.layer, "dev/null"))
				if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 || st.Mode&0o777 != 0o666 {
					t.Errorf("null: mode %o rdev %d", st.Mode, st.Rdev)
				}
				if st := lstat(t, filepath.Join(s.layer, "dev/loop0")); st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != 7 {
					t.Errorf("loop0: mode %o", st.Mode)
				}
				if st := lstat(t, filepath.Join(s.layer, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
					t.Errorf("fifo: mode %o", st.Mode)
				}
			},
		},
		{
			desc: "xattrs kept, overlay xattrs dropped",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{{name: "f", body: "x", xattrs: map[string]string{"user.k": "v", "trusted.overlay.redirect": "/etc"}}}
			},
			check: func(t *testing.T, s sandbox) {
				buf := make([]byte, 16)
				n, err := unix.Lgetxattr(filepath.Join(s.layer, "f"), "user.k", buf)
				if err != nil || string(buf[:n]) != "v" {
					t.Errorf("user.k = %q %v", buf[:n], err)
				}
				if _, err := unix.Lgetxattr(filepath.Join(s.layer, "f"), "trusted.overlay.redirect", buf); err == nil {
					t.Errorf("overlay xattr was set")
				}
			},
		},
		{
			desc: "dir replaced by file and file by dir",
			entries: func(sandbox) []tarEntry {
				return []tarEntry{
					{name: "a/x", body: "1"},
					{name: "a", body: "file now"},
					{name: "b", body: "2"},
					{name: "b/", typ: tar.TypeDir},
				}
			},
			check: func(t *testing.T, s sandbox) {
				if data, _ := os.ReadFile(filepath.Join(s.layer, "a")); string(data) != "file now" {
					t.Errorf("a = %q", data)
				}
				if fi, err := os.Lstat(filepath.Join(s.layer, "b")); err != nil || !fi.IsDir() {
					t.Errorf("b not a dir: %v", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newSandbox(t)
			raw := makeTar(t, tc.entries(s))
			diffID, err := unpackLayer(context.Background(), bytes.NewReader(raw), s.layer, defaultLimits())
			s.check(t)
			if tc.wantErr {
				if err == nil {
					t.Fatal("unpack succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			if want := sha256Hex(raw); diffID != want {
				t.Errorf("diffID %s, want %s", diffID, want)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestUnpackCompression(t *testing.T) {
	raw := makeTar(t, []tarEntry{{name: "etc/hostname", body: "box"}, {name: "bin/", typ: tar.TypeDir},
		{name: "big", body: string(bytes.Repeat([]byte("0123456789"), 300))}})
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(raw)
	gw.Close()
	zw, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(raw)
	zw.Close()
	tests := []struct {
		desc    string
		blob    []byte
		wantErr error
	}{
		{desc: "uncompressed", blob: raw},
		{desc: "gzip", blob: gz.Bytes()},
		{desc: "zstd", blob: zs.Bytes()},
		{desc: "truncated tar", blob: raw[:len(raw)-2500], wantErr: errdefs.ErrDataLoss},
		{desc: "truncated gzip", blob: gz.Bytes()[:gz.Len()/2], wantErr: errdefs.ErrDataLoss},
		{desc: "corrupt zstd", blob: append(append([]byte{}, zs.Bytes()[:8]...), bytes.Repeat([]byte{0xff}, 64)...), wantErr: errdefs.ErrDataLoss},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newSandbox(t)
			diffID, err := unpackLayer(context.Background(), bytes.NewReader(tc.blob), s.layer, defaultLimits())
			s.check(t)
			if errorCase(t, err, tc.wantErr) {
				return
			}
			if diffID != sha256Hex(raw) {
				t.Errorf("diffID %s, want %s", diffID, sha256Hex(raw))
			}
			if data, err := os.ReadFile(filepath.Join(s.layer, "etc/hostname")); err != nil || string(data) != "box" {
				t.Errorf("hostname = %q, %v", data, err)
			}
		})
	}
}

func mustExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		t.Errorf("%s: %v", p, err)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
