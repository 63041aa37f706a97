package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// byteMeter counts the body bytes a registry handler wrote, by the last
// element of the request path (a digest or a tag).
type byteMeter struct {
	mu     sync.Mutex
	served map[string]int64
}

func (m *byteMeter) get(key string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.served[key]
}

type meteredWriter struct {
	http.ResponseWriter
	m   *byteMeter
	key string
}

func (w meteredWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.m.mu.Lock()
	w.m.served[w.key] += int64(n)
	w.m.mu.Unlock()
	return n, err
}

func (w meteredWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// metered counts what every GET serves and lets override answer the GETs
// whose path ends in one of its keys.
func metered(m *byteMeter, override map[string]http.HandlerFunc) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				next.ServeHTTP(w, r)
				return
			}
			key := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			mw := meteredWriter{ResponseWriter: w, m: m, key: key}
			if h := override[key]; h != nil {
				h(mw, r)
				return
			}
			next.ServeHTTP(mw, r)
		})
	}
}

// flood answers with up to total bytes of JSON whitespace, announcing
// contentLength (none if negative), and stops when the client goes away.
func flood(contentType string, total, contentLength int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		if contentLength >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(contentLength, 10))
		}
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for sent := int64(0); sent < total; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

// putManifest stores raw as repo:tag in the registry as it is, unchecked.
func (r *testRegistry) putManifest(t *testing.T, repo, tag string, mt types.MediaType, raw []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, "http://"+r.pushHost+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", string(mt))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest %s:%s: %s", repo, tag, resp.Status)
	}
}

// TestPullDeclaredSizeBounds checks that sizes a registry declares are
// bounded before the bytes are fetched: a lying manifest or a flood costs a
// few MiB of reading at most, never what it announces.
func TestPullDeclaredSizeBounds(t *testing.T) {
	noise := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{2}).Read(noise)
	layer := testLayer(t, []tarEntry{{name: "noise", body: string(noise)}})
	img := testImage(t, v1.Config{Cmd: []string{"x"}}, layer)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	// The meter counts by the last path element: the digest for blobs.
	cfgDigest, layerDigest := m.Config.Digest.String(), m.Layers[0].Digest.String()
	withConfigSize := func(size int64) []byte {
		c := *m
		c.Config.Size = size
		raw, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	const (
		gib = int64(1) << 30
		// What the kernel may have accepted from the handler before the
		// client closed the connection: socket buffers grow to a few MiB
		// on loopback. Far below the 100 MiB go-containerregistry reads.
		slack = 48 << 20
	)
	tests := []struct {
		desc string
		// manifest replaces the pushed manifest of repo:1 when set.
		manifest []byte
		override map[string]http.HandlerFunc
		limits   func(*limits)
		// maxServed bounds the bytes served for each path key.
		maxServed map[string]int64
	}{
		{
			desc:      "config declared over 16 MiB is not fetched",
			manifest:  withConfigSize(gib),
			override:  map[string]http.HandlerFunc{cfgDigest: flood("application/octet-stream", 64<<20, gib)},
			maxServed: map[string]int64{cfgDigest: 0},
		},
		{
			desc:      "config declared negative is not fetched",
			manifest:  withConfigSize(-1),
			override:  map[string]http.HandlerFunc{cfgDigest: flood("application/octet-stream", 64<<20, -1)},
			maxServed: map[string]int64{cfgDigest: 0},
		},
		{
			desc:      "layer declared over the bound is not fetched",
			limits:    func(l *limits) { l.layerSize = 32 << 10 },
			maxServed: map[string]int64{layerDigest: 0},
		},
		{
			desc:      "manifest streaming past 4 MiB is cut at the bound",
			override:  map[string]http.HandlerFunc{"1": flood(string(types.OCIManifestSchema1), 256<<20, -1)},
			maxServed: map[string]int64{"1": maxManifestSize + slack},
		},
		{
			desc:      "manifest declaring more than 4 MiB is not read",
			override:  map[string]http.HandlerFunc{"1": flood(string(types.OCIManifestSchema1), 256<<20, 256<<20)},
			maxServed: map[string]int64{"1": slack},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			meter := &byteMeter{served: map[string]int64{}}
			reg := startRegistry(t, metered(meter, tc.override))
			reg.push(t, "bounded:1", img)
			if tc.manifest != nil {
				reg.putManifest(t, "bounded", "1", m.MediaType, tc.manifest)
			}
			s := newTestStore(t, Options{})
			if tc.limits != nil {
				tc.limits(&s.limits)
			}
			_, err := s.Pull(context.Background(), reg.host+"/bounded:1", nil)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
			t.Logf("error: %v", err)
			for key, max := range tc.maxServed {
				if got := meter.get(key); got > max {
					t.Errorf("registry served %d bytes for %s, want at most %d", got, key, max)
				}
			}
			if len(s.List()) != 0 {
				t.Errorf("image recorded after failed pull")
			}
			assertNoPartial(t, s)
		})
	}
}

// TestPullLayerBounds checks the bounds on what a layer expands to: the
// unpack fails with InvalidArgument and leaves no layer, whole or partial.
func TestPullLayerBounds(t *testing.T) {
	many := func(n int) []tarEntry {
		var entries []tarEntry
		for i := range n {
			entries = append(entries, tarEntry{name: fmt.Sprintf("f%03d", i), body: "x"})
		}
		return entries
	}
	zeros := strings.Repeat("\x00", 2<<20)
	// A valid tar followed by 2 MiB of zeros after its end: only the
	// stream bound sees those (the diff ID covers them).
	padded := append(makeTar(t, []tarEntry{{name: "f", body: "x"}}), make([]byte, 2<<20)...)
	paddedLayer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(padded)), nil })
	if err != nil {
		t.Fatal(err)
	}
	exact := many(10)
	exactTar := makeTar(t, exact)
	tests := []struct {
		desc    string
		layer   v1.Layer
		limits  limits
		wantErr bool
	}{
		{desc: "file content past the bytes bound (gzip bomb)", layer: testLayer(t, []tarEntry{{name: "z", body: zeros}}),
			limits: limits{layerSize: 1 << 20, layerBytes: 1 << 20, layerEntries: 100}, wantErr: true},
		{desc: "file content past the bytes bound (zstd bomb)", layer: zstdLayer(t, []tarEntry{{name: "z", body: zeros}}),
			limits: limits{layerSize: 1 << 20, layerBytes: 1 << 20, layerEntries: 100}, wantErr: true},
		{desc: "stream past the bytes bound after the tar ends", layer: paddedLayer,
			limits: limits{layerSize: 1 << 20, layerBytes: 1 << 20, layerEntries: 100}, wantErr: true},
		{desc: "more entries than the bound", layer: testLayer(t, many(11)),
			limits: limits{layerSize: 1 << 20, layerBytes: 1 << 20, layerEntries: 10}, wantErr: true},
		{desc: "exactly at every bound", layer: testLayer(t, exact),
			limits: limits{layerSize: 1 << 20, layerBytes: int64(len(exactTar)), layerEntries: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			reg := startRegistry(t, nil)
			reg.push(t, "bomb:1", testImage(t, v1.Config{}, tc.layer))
			s := newTestStore(t, Options{})
			s.limits = tc.limits
			_, err := s.Pull(context.Background(), reg.host+"/bomb:1", nil)
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || errdefs.IsDataLoss(err) {
				t.Fatalf("err = %v, want InvalidArgument (and not DataLoss)", err)
			}
			t.Logf("error: %v", err)
			if len(s.List()) != 0 || len(s.layers) != 0 {
				t.Errorf("image or layer recorded after failed unpack: %d images, %d layers", len(s.List()), len(s.layers))
			}
			if entries, _ := os.ReadDir(s.layersDir()); len(entries) != 0 {
				t.Errorf("layers dir not empty: %v", entries)
			}
			assertNoPartial(t, s)
		})
	}
}

// zstdFrame is a zstd frame holding payload as one raw block, after the
// given frame header (descriptor byte, then window descriptor or content
// size). Encoders shrink the window to the input, so a test that wants a
// frame declaring a large window writes it by hand (RFC 8878, 3.1.1).
func zstdFrame(header, payload []byte) []byte {
	out := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, header...)
	bh := uint32(1) | uint32(len(payload))<<3 // last block, raw
	out = append(out, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(out, payload...)
}

// TestUnpackZstdWindow checks that a zstd layer declaring a window over
// zstdMaxWindow is refused before the decoder allocates it.
func TestUnpackZstdWindow(t *testing.T) {
	raw := makeTar(t, []tarEntry{{name: "f", body: "x"}})
	le32 := func(n uint32) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)} }
	// Window descriptor: exponent (log2 - 10) in the top five bits.
	windowLog := func(log byte) byte { return (log - 10) << 3 }
	tests := []struct {
		desc    string
		header  []byte
		wantErr bool
	}{
		{desc: "window at the bound", header: []byte{0x00, windowLog(27)}},
		{desc: "window over the bound", header: []byte{0x00, windowLog(28)}, wantErr: true},
		// Single segment: the content size is the window.
		{desc: "single segment of the real size", header: append([]byte{0xa0}, le32(uint32(len(raw)))...)},
		{desc: "single segment declaring 1 TiB", header: []byte{0xe0, 0, 0, 0, 0, 0, 1, 0, 0}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newSandbox(t)
			diffID, err := unpackLayer(context.Background(), bytes.NewReader(zstdFrame(tc.header, raw)), s.layer, defaultLimits())
			s.check(t)
			if tc.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil || diffID != sha256Hex(raw) {
				t.Fatalf("unpack = %s, %v; want %s", diffID, err, sha256Hex(raw))
			}
		})
	}
}

func TestEntryBytes(t *testing.T) {
	xattrs := map[string]string{paxXattrPrefix + "user.a": "abc", "comment": "not an xattr"}
	tests := []struct {
		desc string
		hdr  tar.Header
		want int64
	}{
		{desc: "regular file", hdr: tar.Header{Typeflag: tar.TypeReg, Size: 5}, want: 5},
		{desc: "file and xattr", hdr: tar.Header{Typeflag: tar.TypeReg, Size: 5, PAXRecords: xattrs}, want: 8},
		{desc: "dir with xattr", hdr: tar.Header{Typeflag: tar.TypeDir, Size: 100, PAXRecords: xattrs}, want: 3},
		{desc: "hardlink", hdr: tar.Header{Typeflag: tar.TypeLink, Size: 100}, want: 0},
		{desc: "saturates", hdr: tar.Header{Typeflag: tar.TypeReg, Size: math.MaxInt64, PAXRecords: xattrs}, want: math.MaxInt64},
		{desc: "negative size", hdr: tar.Header{Typeflag: tar.TypeReg, Size: -1}, want: 0},
	}
	for _, tc := range tests {
		if got := entryBytes(&tc.hdr); got != tc.want {
			t.Errorf("%s: entryBytes = %d, want %d", tc.desc, got, tc.want)
		}
	}
}

// endless is an infinite source that counts what was read from it.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	e.read += int64(len(p))
	return len(p), nil
}

func TestCapReader(t *testing.T) {
	tests := []struct {
		desc    string
		size    int64 // of the source; -1 for endless
		max     int64
		wantErr bool
	}{
		{desc: "under", size: 10, max: 11},
		{desc: "at", size: 11, max: 11},
		{desc: "one over", size: 12, max: 11, wantErr: true},
		{desc: "endless", size: -1, max: 1 << 20, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var src io.Reader
			e := &endless{}
			if tc.size < 0 {
				src = e
			} else {
				src = bytes.NewReader(make([]byte, tc.size))
			}
			got, err := io.ReadAll(newCapReader(src, tc.max, "test body"))
			if tc.wantErr != (err != nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
				t.Fatalf("err = %v, want error %v (InvalidArgument)", err, tc.wantErr)
			}
			if int64(len(got)) > tc.max+1 {
				t.Errorf("passed %d bytes through, want at most %d", len(got), tc.max+1)
			}
			if e.read > tc.max+1 {
				t.Errorf("read %d bytes from the source, want at most %d", e.read, tc.max+1)
			}
		})
	}
}

// TestLimitTransport checks the manifest bound on the HTTP body itself,
// whatever reads it.
func TestLimitTransport(t *testing.T) {
	const limit = 1 << 10
	tests := []struct {
		desc    string
		method  string // GET if empty
		length  int64  // Content-Length; -1 for none
		body    int
		limited bool
		wantErr bool
	}{
		{desc: "no limit", length: -1, body: 4 * limit},
		{desc: "within", length: -1, body: limit, limited: true},
		{desc: "streams past", length: -1, body: 4 * limit, limited: true, wantErr: true},
		{desc: "declares past", length: 4 * limit, body: 4 * limit, limited: true, wantErr: true},
		{desc: "HEAD declares past", method: http.MethodHead, length: 4 * limit, limited: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			body := &endless{}
			rt := limitTransport{next: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: http.StatusOK, ContentLength: tc.length,
					Body: io.NopCloser(io.LimitReader(body, int64(tc.body)))}, nil
			})}
			ctx := context.Background()
			if tc.limited {
				ctx = withBodyLimit(ctx, limit)
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, _ := http.NewRequestWithContext(ctx, method, "http://registry.test/v2/x/manifests/1", nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tc.wantErr != (err != nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
				t.Fatalf("err = %v, want error %v (InvalidArgument)", err, tc.wantErr)
			}
			if tc.limited && body.read > limit+1 {
				t.Errorf("read %d body bytes, want at most %d", body.read, limit+1)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestImportBounds checks that the bounds hold for archives too, which share
// the manifest checks with pulls.
func TestImportBounds(t *testing.T) {
	img := testImage(t, v1.Config{}, testLayer(t, []tarEntry{{name: "a", body: strings.Repeat("a", 4096)}}))
	s := newTestStore(t, Options{})
	s.limits.layerSize = 16
	_, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, map[string]v1.Image{"example.com/big:1": img})))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
	if len(s.List()) != 0 || len(s.layers) != 0 {
		t.Errorf("image or layer recorded")
	}
	assertNoPartial(t, s)
}
