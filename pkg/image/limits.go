package image

import (
	"fmt"
	"io"

	"github.com/containerd/errdefs"
)

// Bounds on what a registry or an image archive can make the store read,
// write or hold in memory. Every size that comes from outside is checked
// against its bound before the bytes it announces are read or written, and
// every read is bounded too, so that a lying size cannot get past: a
// declared size over a bound is errdefs.ErrInvalidArgument (the image is not
// one we accept); content longer than it declared is errdefs.ErrDataLoss
// (the download is corrupt), like any other digest or size mismatch.
const (
	// maxManifestSize bounds a manifest or an index, which is held in
	// memory; real ones are a few KiB.
	maxManifestSize = 4 << 20
	// maxConfigSize bounds an image config blob, which is held in memory
	// and parsed; real ones are a few KiB, large history included.
	maxConfigSize = 16 << 20

	// defaultMaxLayerSize bounds a layer blob's declared, compressed size.
	// The largest real layers (CUDA, model weights baked into images) are
	// a few GiB; anything near this is an attempt to fill the disk.
	defaultMaxLayerSize = 16 << 30
	// defaultMaxLayerBytes bounds a layer once decompressed: its tar stream,
	// and separately the bytes its entries write (a sparse entry writes
	// more than the stream holds). Four times the compressed bound, for
	// well-compressing layers; a decompression bomb stops here.
	defaultMaxLayerBytes = 64 << 30
	// defaultMaxLayerEntries bounds the tar entries (so inodes) of one
	// layer. Real layers with a large node_modules or site-packages have a
	// few hundred thousand.
	defaultMaxLayerEntries = 1 << 20

	// zstdMaxWindow bounds the window a zstd layer may ask the decoder to
	// allocate (the frame header chooses it, so the layer does). 128 MiB is
	// the reference decoder's own default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT,
	// 27): whatever `zstd -d` accepts without --memory we accept, including
	// --ultra -22 and --long, which use exactly 2^27. klauspost's default is
	// 512 MiB; the 1 GiB we had let each of the unpacks running at once
	// allocate 1 GiB on a layer's say-so. klauspost's encoder, which
	// buildkit and containerd use, writes windows of at most 8 MiB.
	zstdMaxWindow = 1 << 27
)

// limits are the per-layer bounds of a Store. They are fields, not
// constants, so that tests can lower them.
type limits struct {
	layerSize    int64 // declared compressed size of a layer blob
	layerBytes   int64 // uncompressed tar stream, and bytes written, per layer
	layerEntries int   // tar entries per layer
}

func defaultLimits() limits {
	return limits{layerSize: defaultMaxLayerSize, layerBytes: defaultMaxLayerBytes, layerEntries: defaultMaxLayerEntries}
}

// capReader passes at most max+1 bytes of r through, then fails with tooBig:
// reading the one byte past the bound tells content over it from content
// exactly at it without reading further.
type capReader struct {
	r      io.Reader
	read   int64
	max    int64
	tooBig func() error
}

func newCapReader(r io.Reader, max int64, what string) *capReader {
	return &capReader{r: r, max: max, tooBig: func() error {
		return fmt.Errorf("%s is over the %d-byte limit: %w", what, max, errdefs.ErrInvalidArgument)
	}}
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.read > c.max {
		return 0, c.tooBig()
	}
	if left := c.max + 1 - c.read; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	if c.read > c.max {
		return n, c.tooBig()
	}
	return n, err
}
