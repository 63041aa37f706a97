package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Streaming a layer: one read of a layer blob's body both stores the blob
// and unpacks the layer.
//
//	body -> blobWriter -> ingest file -> blobFollower -> unpackLayer -> .tmp- dir
//	        (blob digest, size)          (page cache)    (diff ID)
//
// The download writes the ingest file at network speed and never waits for
// the unpack, which follows it through the file. So the watchdog still
// measures the registry alone (a slow unpack is no stall, as when the
// unpack came after the download), no more than one blob's worth of data
// is ever held, and only on disk; and the download of one layer overlaps
// the unpack of it and of others.
//
// Nothing is committed until both checks have passed: the blob's digest and
// size (blobWriter.receive) and the diff ID of what was unpacked, which can
// only end after the writer verified the blob. Then commitLayer syncs the
// filesystem (the layer's files, and the ingest file beside them), commits
// the blob (synced, renamed into the store) and then the layer (renamed,
// recorded). A crash before the blob's rename leaves an ingest file and a
// .tmp- dir, both deleted at the next start; one between the two commits
// leaves a verified blob that nothing references, collected at start.
// On every error the ingest file and the .tmp- dir are deleted before
// streamLayer returns.

// blobReader reads a blob from where it comes from and passes its body to
// consume, returning consume's error or its own.
type blobReader func(ctx context.Context, consume func(body io.Reader) error) error

// streamLayer stores job.blob, which is not in the content store, and
// unpacks it as layer job.diffID, from one read of the blob.
func (s *Store) streamLayer(ctx context.Context, job layerJob, read blobReader) (*layerRecord, error) {
	w, err := s.content.writer()
	if err != nil {
		return nil, err
	}
	defer w.Close() // deletes the ingest file unless committed
	return s.unpackAside(ctx, job, func(dir string) (string, error) {
		return s.receiveAndUnpack(ctx, job, w, dir, read)
	}, func() error {
		// receive verified it already; a blob is never committed under a
		// name it was not checked against, whatever read did.
		if err := w.verify(job.blob.Digest, job.blob.Size); err != nil {
			return err
		}
		_, err := w.commit()
		return err
	})
}

// receiveAndUnpack downloads the blob into w and unpacks it into dir at the
// same time, and returns the diff ID of what was unpacked. The first
// failure on either side stops the other and is returned: the other side's
// error is then only its consequence.
func (s *Store) receiveAndUnpack(ctx context.Context, job layerJob, w *blobWriter, dir string, read blobReader) (string, error) {
	follower := newBlobFollower(w)
	downloadCtx, stopDownload := context.WithCancelCause(ctx)
	defer stopDownload(nil)
	unpackCtx, stopUnpack := context.WithCancelCause(ctx)
	defer stopUnpack(nil)
	var first firstError
	var diffID string
	var unpacked chan struct{}
	err := read(downloadCtx, func(body io.Reader) error {
		if unpacked != nil {
			return errors.New("blob body read twice")
		}
		// Started once the body is open: an unpack does not take an
		// unpack slot while its download waits for a download slot.
		unpacked = make(chan struct{})
		go func() {
			defer close(unpacked)
			var err error
			if diffID, err = s.unpackSlotted(unpackCtx, job, follower, dir); err != nil {
				first.set(err)
				stopDownload(err)
			}
		}()
		return w.receive(job.blob.Digest, job.blob.Size, body)
	})
	if err != nil {
		first.set(err)
		stopUnpack(err)
	}
	follower.finish(err)
	if unpacked != nil {
		<-unpacked
	}
	if err := first.get(); err != nil {
		return "", err
	}
	if unpacked == nil {
		return "", fmt.Errorf("layer blob %s: nothing was read", job.blob.Digest)
	}
	return diffID, nil
}

// blobFollower reads a blob from its ingest file while a blobWriter is
// still writing it: up to what has been written, then it waits for more.
// It reports the end only once the writer has finished: io.EOF if the blob
// verified, the writer's error if not, so a reader never takes a truncated
// or corrupt download for a complete one.
type blobFollower struct {
	f   *os.File
	off int64 // next byte to read; used by the reader only

	mu   sync.Mutex
	more sync.Cond // signalled when size grows or done is set
	size int64     // bytes in the file
	done bool
	err  error // the writer's, once done
}

// newBlobFollower follows w from its first byte; w must not have been
// written to yet.
func newBlobFollower(w *blobWriter) *blobFollower {
	fl := &blobFollower{f: w.f}
	fl.more.L = &fl.mu
	w.wrote = fl.wrote
	return fl
}

func (fl *blobFollower) wrote(size int64) {
	fl.mu.Lock()
	fl.size = size
	fl.mu.Unlock()
	fl.more.Broadcast()
}

// finish tells the reader that the writer is done: err is nil if the whole
// blob was received and verified.
func (fl *blobFollower) finish(err error) {
	fl.mu.Lock()
	fl.done, fl.err = true, err
	fl.mu.Unlock()
	fl.more.Broadcast()
}

func (fl *blobFollower) Read(p []byte) (int, error) {
	fl.mu.Lock()
	for fl.off >= fl.size && !fl.done {
		fl.more.Wait()
	}
	size, done, err := fl.size, fl.done, fl.err
	fl.mu.Unlock()
	if done && err != nil {
		return 0, fmt.Errorf("layer blob download: %w", err)
	}
	if fl.off >= size {
		return 0, io.EOF
	}
	n, err := fl.f.ReadAt(p[:min(int64(len(p)), size-fl.off)], fl.off)
	fl.off += int64(n)
	if errors.Is(err, io.EOF) {
		// The writer said these bytes were written.
		err = fmt.Errorf("ingest file shorter than written: %w", io.ErrUnexpectedEOF)
	}
	return n, err
}

// firstError keeps the first error of concurrent work.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
