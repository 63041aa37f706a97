package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Layer unpacking.
//
// Safety: every path in the tar is cleaned as if rooted ("../../x" is "x"),
// and every file operation goes through an os.Root opened on the layer dir,
// with a parent directory handle plus a single name component for the *at
// system calls. os.Root refuses to follow a symlink that leaves the root or
// is absolute, so no entry — path, symlink, hardlink, whiteout — can create,
// modify or link anything outside the layer dir. The final component is never
// followed (O_EXCL|O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, linkat without
// AT_SYMLINK_FOLLOW). Symlink targets themselves are just data.
//
// A limitation that follows: an entry whose parent path goes through an
// absolute symlink created earlier in the same layer fails the unpack
// instead of being resolved inside the layer. Image builders record real
// paths, so real layers do not contain such entries.
//
// OCI whiteouts become overlayfs ones: ".wh.name" -> a 0:0 character device
// "name"; ".wh..wh..opq" -> trusted.overlay.opaque=y on the directory. Other
// trusted.overlay.* xattrs in the tar are dropped: they would steer overlayfs.
//
// Bounds (limits): the decompressed stream is read through a cap of
// layerBytes; the bytes entries write (file sizes, xattr values) are summed
// and checked against layerBytes before each entry is written, as a sparse
// entry writes more than the stream holds; and the number of entries is
// capped at layerEntries. Exceeding one fails the unpack with
// errdefs.ErrInvalidArgument, and the caller deletes the half-written dir.

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
	paxXattrPrefix = "SCHILY.xattr."
)

// unpackLayer decompresses (gzip, zstd or none, by magic number) and applies
// the layer r into dir, an existing empty directory, within the bounds lim,
// and returns the layer's diff ID (sha256 of the uncompressed tar stream).
func unpackLayer(ctx context.Context, r io.Reader, dir string, lim limits) (string, error) {
	dr, err := decompress(r)
	if err != nil {
		return "", err
	}
	defer dr.Close()
	h := sha256.New()
	// Capped before hashing: a bomb stops at the bound, also in the
	// trailer, which nothing else would limit.
	tee := io.TeeReader(newCapReader(dr, lim.layerBytes, "uncompressed layer"), h)
	if err := applyTar(ctx, tar.NewReader(tee), dir, lim); err != nil {
		return "", err
	}
	// The diff ID covers the whole stream, including the end-of-archive
	// blocks and padding after the last entry.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", fmt.Errorf("read layer trailer: %w", corrupt(err))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// corrupt marks a failure to read the layer stream as data loss, unless it
// already says what is wrong (the stream went past its bound).
func corrupt(err error) error {
	if errdefs.IsInvalidArgument(err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrDataLoss)
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress sniffs the compression instead of trusting the media type:
// docker archives name gzip layers ".tar" and registries mislabel them.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip layer: %w: %w", err, errdefs.ErrDataLoss)
		}
		return zr, nil
	case bytes.HasPrefix(head, zstdMagic):
		if err := checkZstdWindow(br); err != nil {
			return nil, err
		}
		// A frame header picks the window the decoder allocates (a
		// single-segment frame: its whole content size); the decoder
		// refuses frames that ask for more than zstdMaxWindow.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, fmt.Errorf("open zstd layer: %w: %w", err, errdefs.ErrDataLoss)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

// checkZstdWindow refuses a layer whose first zstd frame declares a window
// over zstdMaxWindow, with the bound's error rather than the decoder's (which
// reads as corruption). The decoder enforces the bound on later frames.
func checkZstdWindow(br *bufio.Reader) error {
	// Short input leaves the header undecodable; the decoder reports it.
	peek, _ := br.Peek(zstd.HeaderMaxSize)
	var h zstd.Header
	if h.Decode(peek) != nil || h.Skippable {
		return nil
	}
	window := h.WindowSize
	if h.SingleSegment {
		window = h.FrameContentSize
	}
	if window > zstdMaxWindow {
		return fmt.Errorf("zstd layer declares a %d-byte window, over the %d-byte limit: %w", window, zstdMaxWindow, errdefs.ErrInvalidArgument)
	}
	return nil
}

// applyTar writes the entries of tr into dir, within lim.
func applyTar(ctx context.Context, tr *tar.Reader, dir string, lim limits) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open layer dir: %w", err)
	}
	defer root.Close()
	u := unpacker{root: root, chown: os.Geteuid() == 0, buf: make([]byte, fileCopyBufferSize)}
	var dirs []*tar.Header
	var written int64 // bytes entries declare they write
	for i := 0; ; i++ {
		if i%256 == 0 && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", corrupt(err))
		}
		if i >= lim.layerEntries {
			return fmt.Errorf("layer has more than %d entries: %w", lim.layerEntries, errdefs.ErrInvalidArgument)
		}
		// Checked before the entry is written; written never exceeds the
		// bound, so the subtraction cannot wrap.
		n := entryBytes(hdr)
		if n > lim.layerBytes-written {
			return fmt.Errorf("layer entry %q: layer writes more than %d bytes: %w", hdr.Name, lim.layerBytes, errdefs.ErrInvalidArgument)
		}
		written += n
		name, ok := cleanName(hdr.Name)
		if !ok {
			// The layer root itself: its attributes come from the
			// container's upper dir, not from here.
			continue
		}
		if err := u.apply(hdr, name, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			h := *hdr
			h.Name = name
			dirs = append(dirs, &h)
		}
	}
	// Directory times last: creating entries inside changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := u.at(dirs[i].Name, func(pfd int, base string) error {
			return setTimes(pfd, base, dirs[i])
		}); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("layer dir %q: %w", dirs[i].Name, err)
		}
	}
	return nil
}

// entryBytes is what applying hdr writes: a regular file's content (all of
// it, holes of a sparse file included) and its xattr values. The sum
// saturates at math.MaxInt64 rather than wrap.
func entryBytes(hdr *tar.Header) int64 {
	var n int64 // xattr values: at most the tar reader's 1 MiB of PAX records
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) {
			n += int64(len(v))
		}
	}
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
		if hdr.Size > math.MaxInt64-n {
			return math.MaxInt64
		}
		n += max(hdr.Size, 0)
	}
	return n
}

// cleanName makes a tar path relative to the layer root; ok is false for
// the root itself.
func cleanName(name string) (string, bool) {
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	return n, n != ""
}

type unpacker struct {
	root  *os.Root
	chown bool
	buf   []byte // copies file contents, reused for every file of the layer
}

// fileCopyBufferSize is the size of the writes that fill a layer's files.
const fileCopyBufferSize = 128 << 10

// at runs fn with a handle on name's parent directory (creating missing
// parents) and name's last component.
func (u *unpacker) at(name string, fn func(pfd int, base string) error) error {
	parent, base := path.Split(name)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	} else if err := u.root.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	pf, err := openDir(u.root, parent)
	if err != nil {
		return err
	}
	defer pf.Close()
	return fn(int(pf.Fd()), base)
}

func (u *unpacker) apply(hdr *tar.Header, name string, r io.Reader) error {
	base := path.Base(name)
	if base == whiteoutOpaque {
		return u.at(name, func(pfd int, _ string) error {
			return unix.Fsetxattr(pfd, opaqueXattr, []byte("y"), 0)
		})
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		target := strings.TrimPrefix(base, whiteoutPrefix)
		if strings.HasPrefix(target, whiteoutPrefix) || target == "" || target == "." || target == ".." {
			// AUFS bookkeeping (.wh..wh.plnk etc.): meaningless to overlayfs.
			return nil
		}
		return u.at(path.Join(path.Dir(name), target), func(pfd int, b string) error {
			if err := u.removeExisting(pfd, b, false); err != nil {
				return err
			}
			return unix.Mknodat(pfd, b, unix.S_IFCHR, 0)
		})
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		return nil
	default:
		klog.V(4).InfoS("Skipping unsupported layer entry", "name", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
	return u.at(name, func(pfd int, b string) error {
		if err := u.removeExisting(pfd, b, hdr.Typeflag == tar.TypeDir); err != nil {
			return err
		}
		mode := uint32(hdr.Mode) & 0o7777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := unix.Mkdirat(pfd, b, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			fd, err := unix.Openat(pfd, b, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return err
			}
			f := os.NewFile(uintptr(fd), b)
			// Through our buffer: os.File's ReadFrom would allocate one per
			// file, and a small one.
			_, err = io.CopyBuffer(struct{ io.Writer }{f}, r, u.buf)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = fmt.Errorf("%w: %w", err, errdefs.ErrDataLoss)
				}
				return err
			}
		case tar.TypeSymlink:
			if err := unix.Symlinkat(hdr.Linkname, pfd, b); err != nil {
				return err
			}
		case tar.TypeLink:
			target, ok := cleanName(hdr.Linkname)
			if !ok {
				return fmt.Errorf("hardlink to the layer root: %w", errdefs.ErrInvalidArgument)
			}
			// A hardlink shares the target's inode and attributes: set none.
			return u.link(target, pfd, b)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknodat(pfd, b, typ|mode, int(dev)); err != nil {
				return err
			}
		}
		return u.setAttrs(pfd, b, hdr, mode)
	})
}

// removeExisting clears the way for a new entry: a directory stays when the
// new entry is a directory too (its attributes are updated), anything else
// is replaced, as docker and containerd do.
func (u *unpacker) removeExisting(pfd int, base string, newIsDir bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && newIsDir {
		return nil
	}
	if !isDir {
		return unix.Unlinkat(pfd, base, 0)
	}
	// A directory replaced by a non-directory: remove the tree through a
	// root on the parent so the removal stays inside the layer too.
	pr, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", pfd))
	if err != nil {
		return err
	}
	defer pr.Close()
	return pr.RemoveAll(base)
}

// openDir opens a directory inside root. O_DIRECTORY matters: a plain open
// of a path that is a FIFO in a hostile layer would block forever.
func openDir(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY, 0)
}

func (u *unpacker) link(target string, pfd int, base string) error {
	tparent, tbase := path.Split(target)
	tparent = strings.TrimSuffix(tparent, "/")
	if tparent == "" {
		tparent = "."
	}
	tf, err := openDir(u.root, tparent)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", target, err)
	}
	defer tf.Close()
	// Flags 0: never follow a symlink target; the link gets the symlink
	// itself, which stays inside the layer.
	if err := unix.Linkat(int(tf.Fd()), tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", target, err)
	}
	return nil
}

func (u *unpacker) setAttrs(pfd int, base string, hdr *tar.Header, mode uint32) error {
	isLink := hdr.Typeflag == tar.TypeSymlink
	if u.chown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if !isLink {
		// After chown, which clears setuid/setgid bits.
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := setXattrs(pfd, base, hdr, isLink); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil // set at the end
	}
	return setTimes(pfd, base, hdr)
}

func setXattrs(pfd int, base string, hdr *tar.Header, isLink bool) error {
	var fd = -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || name == "" {
			continue
		}
		if strings.HasPrefix(name, "trusted.overlay.") {
			klog.V(4).InfoS("Dropping overlay xattr from layer", "name", hdr.Name, "xattr", name)
			continue
		}
		if isLink {
			// Only trusted.* may sit on a symlink, and setting it needs
			// a path walk we avoid; no real image carries one.
			klog.V(4).InfoS("Skipping xattr on symlink", "name", hdr.Name, "xattr", name)
			continue
		}
		if fd < 0 {
			var err error
			fd, err = unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open for xattr: %w", err)
			}
		}
		// An O_PATH handle cannot take fsetxattr; its /proc magic link
		// names exactly that inode.
		if err := unix.Setxattr("/proc/self/fd/"+strconv.Itoa(fd), name, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func setTimes(pfd int, base string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Sec: 0, Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}
