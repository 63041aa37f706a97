package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// contentStore keeps blobs by digest under <dir>/sha256/<hex>. A blob is
// written to <dir>/ingest first, checked against its digest and size, synced
// and renamed into place, so a blob path that exists is always complete and
// correct; a failed write leaves nothing behind.
type contentStore struct {
	dir string
}

func newContentStore(dir string) (*contentStore, error) {
	for _, d := range []string{filepath.Join(dir, "sha256"), filepath.Join(dir, "ingest")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create content dir: %w", err)
		}
	}
	// Anything in ingest is a write that a crash interrupted.
	if err := removeDirContents(filepath.Join(dir, "ingest")); err != nil {
		return nil, err
	}
	return &contentStore{dir: dir}, nil
}

// validDigest accepts only sha256 digests: the store and the registry
// protocol names content by them, and the hex is used as a file name.
func validDigest(d string) error {
	if !sha256RE.MatchString(d) {
		return fmt.Errorf("digest %q: want sha256:<64 lowercase hex>: %w", d, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (c *contentStore) path(d string) string {
	return filepath.Join(c.dir, "sha256", strings.TrimPrefix(d, "sha256:"))
}

// has reports whether a complete blob with this digest is stored.
func (c *contentStore) has(d string) bool {
	if validDigest(d) != nil {
		return false
	}
	fi, err := os.Stat(c.path(d))
	return err == nil && fi.Mode().IsRegular()
}

func (c *contentStore) open(d string) (*os.File, error) {
	if err := validDigest(d); err != nil {
		return nil, err
	}
	f, err := os.Open(c.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
	}
	return f, err
}

// readAll reads a small blob (manifest, config) and checks its digest again,
// so that on-disk corruption is reported rather than parsed.
func (c *contentStore) readAll(d string, limit int64) ([]byte, error) {
	f, err := c.open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("blob %s larger than %d bytes: %w", d, limit, errdefs.ErrInvalidArgument)
	}
	if got := digestOf(data); got != d {
		return nil, fmt.Errorf("blob %s on disk has digest %s: %w", d, got, errdefs.ErrDataLoss)
	}
	return data, nil
}

func (c *contentStore) delete(d string) error {
	if err := validDigest(d); err != nil {
		return err
	}
	if err := os.Remove(c.path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// list returns the digests of all stored blobs.
func (c *contentStore) list() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(c.dir, "sha256"))
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		d := "sha256:" + e.Name()
		if validDigest(d) == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// blobWriter receives one blob. Close discards it unless commit succeeded.
type blobWriter struct {
	c    *contentStore
	f    *os.File
	h    hash.Hash
	size int64
	done bool
	// wrote, if set, is told the blob's size after every write, for a
	// reader that follows the blob while it is written (blobFollower).
	wrote func(size int64)
}

func (c *contentStore) writer() (*blobWriter, error) {
	f, err := os.CreateTemp(filepath.Join(c.dir, "ingest"), "blob-")
	if err != nil {
		return nil, fmt.Errorf("create ingest file: %w", err)
	}
	return &blobWriter{c: c, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.size += int64(n)
	if w.wrote != nil {
		w.wrote(w.size)
	}
	return n, err
}

func (w *blobWriter) digest() string { return "sha256:" + hex.EncodeToString(w.h.Sum(nil)) }

// verify checks the written bytes against what the descriptor promised; a
// mismatch is data loss (a corrupt or truncated download).
func (w *blobWriter) verify(want string, wantSize int64) error {
	if wantSize >= 0 && w.size != wantSize {
		return fmt.Errorf("blob %s: got %d bytes, want %d: %w", want, w.size, wantSize, errdefs.ErrDataLoss)
	}
	if got := w.digest(); got != want {
		return fmt.Errorf("blob %s: content has digest %s: %w", want, got, errdefs.ErrDataLoss)
	}
	return nil
}

// commit syncs the blob and renames it into place under its digest. A blob
// that already exists is simply replaced by identical content.
func (w *blobWriter) commit() (string, error) {
	d := w.digest()
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("sync blob %s: %w", d, err)
	}
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("close blob %s: %w", d, err)
	}
	if err := os.Rename(w.f.Name(), w.c.path(d)); err != nil {
		return "", fmt.Errorf("commit blob %s: %w", d, err)
	}
	w.done = true
	return d, syncDir(filepath.Join(w.c.dir, "sha256"))
}

// Close removes the ingest file of a blob that was not committed.
func (w *blobWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// receiveBufferSize is the copy buffer of a blob download: large enough that
// a fast body is written in few system calls.
const receiveBufferSize = 256 << 10

// receive writes r into the blob and checks it against want and wantSize,
// reading at most wantSize+1 bytes so that an overlong body is detected
// without being stored. It does not commit.
func (w *blobWriter) receive(want string, wantSize int64, r io.Reader) error {
	src := r
	if wantSize >= 0 {
		src = io.LimitReader(r, wantSize+1)
	}
	if _, err := io.CopyBuffer(w, src, make([]byte, receiveBufferSize)); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("blob %s truncated after %d bytes: %w: %w", want, w.size, err, errdefs.ErrDataLoss)
		}
		// A verifying reader below us may have noticed the mismatch first;
		// if every byte arrived, our own check gives the clearer answer.
		if wantSize >= 0 && w.size == wantSize {
			if verr := w.verify(want, wantSize); verr != nil {
				return verr
			}
		}
		return fmt.Errorf("write blob %s: %w", want, err)
	}
	return w.verify(want, wantSize)
}

// writeBlob stores r as the blob want, reading at most wantSize+1 bytes so
// that an overlong body is detected without being stored.
func (c *contentStore) writeBlob(want string, wantSize int64, r io.Reader) error {
	if err := validDigest(want); err != nil {
		return err
	}
	w, err := c.writer()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.receive(want, wantSize, r); err != nil {
		return err
	}
	_, err = w.commit()
	return err
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
