package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// noiseLayer makes a gzip layer of n files of size random bytes each under
// dir/. Random content hardly compresses, so any prefix of the blob already
// unpacks to whole files.
func noiseLayer(t testing.TB, seed byte, dir string, n, size int) v1.Layer {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{seed, 'n'})
	entries := []tarEntry{{name: dir + "/", typ: '5'}}
	for i := range n {
		body := make([]byte, size)
		rng.Read(body)
		entries = append(entries, tarEntry{name: fmt.Sprintf("%s/f%03d", dir, i), body: string(body)})
	}
	return testLayer(t, entries)
}

func layerDigests(t testing.TB, l v1.Layer) (blob, diffID string) {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	id, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), id.String()
}

// stallAfter serves the first part of a blob with the full Content-Length,
// then waits for release (or for the client to go away) to send the rest.
func stallAfter(part float64, release <-chan struct{}) func(w http.ResponseWriter, r *http.Request, body []byte) {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", itoa(len(body)))
		cut := int(float64(len(body)) * part)
		w.Write(body[:cut])
		w.(http.Flusher).Flush()
		select {
		case <-release:
			w.Write(body[cut:])
		case <-r.Context().Done():
		}
	}
}

// waitFor polls cond until it holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// unpackingFile reports whether a layer being unpacked (a .tmp- dir) holds
// the file name already.
func unpackingFile(s *Store, name string) bool {
	matches, _ := filepath.Glob(filepath.Join(s.layersDir(), ".tmp-*", name))
	return len(matches) > 0
}

// assertNoLayerLeft checks that a failed pull left no trace of its layer:
// no blob, no ingest file, no layer dir (whole or partial), no record,
// nothing in trash.
func assertNoLayerLeft(t *testing.T, s *Store, blob string) {
	t.Helper()
	assertNoPartial(t, s)
	if s.content.has(blob) {
		t.Errorf("layer blob %s stored", blob)
	}
	if len(s.layers) != 0 {
		t.Errorf("%d layers recorded", len(s.layers))
	}
	if entries, _ := os.ReadDir(s.layersDir()); len(entries) != 0 {
		t.Errorf("layers dir not empty: %v", entries)
	}
}

// countUnpacks makes s count the layer unpacks it starts.
func countUnpacks(s *Store) *atomic.Int32 {
	var n atomic.Int32
	s.testHook = func(point string) {
		if point == "unpack" {
			n.Add(1)
		}
	}
	return &n
}

// TestPullStreamsLayers checks that a layer is unpacked while its blob
// downloads, and that a layer whose blob is complete is committed without
// waiting for the others.
func TestPullStreamsLayers(t *testing.T) {
	early := testLayer(t, []tarEntry{{name: "etc/os-release", body: "ID=test\n"}})
	streamed := noiseLayer(t, 1, "s", 32, 32<<10)
	earlyBlob, earlyDiffID := layerDigests(t, early)
	blob, diffID := layerDigests(t, streamed)
	release := make(chan struct{})
	reg := startRegistry(t, blobFault(blob, stallAfter(0.6, release)))
	img := testImage(t, v1.Config{}, early, streamed)
	reg.push(t, "streamed:1", img)
	s := newTestStore(t, Options{})
	unpacks := countUnpacks(s)

	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(context.Background(), reg.host+"/streamed:1", nil)
		done <- err
	}()
	// With 60% of the streamed blob received and the rest held back:
	waitFor(t, "the first file of the streamed layer is unpacked", func() bool { return unpackingFile(s, "s/f000") })
	waitFor(t, "the other layer is committed", func() bool { return s.layer(earlyDiffID) != nil })
	if s.layer(diffID) != nil || s.content.has(blob) {
		t.Errorf("streamed layer or its blob committed before the download ended")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec := s.layer(diffID)
	if rec == nil {
		t.Fatal("streamed layer not recorded")
	}
	if data, err := os.ReadFile(filepath.Join(s.layerPath(rec.ID), "s", "f031")); err != nil || len(data) != 32<<10 {
		t.Errorf("last file of the streamed layer: %d bytes, %v", len(data), err)
	}
	for _, d := range []string{blob, earlyBlob} {
		if !s.content.has(d) {
			t.Errorf("blob %s not stored", d)
		}
		if n := reg.gets(d); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d, n)
		}
	}
	if n := unpacks.Load(); n != 2 {
		t.Errorf("%d unpacks, want 2", n)
	}
	assertNoPartial(t, s)
}

// TestPullStreamVerification checks that a streamed layer is committed only
// when both its blob digest and its diff ID match: any mismatch fails with
// DataLoss and leaves nothing of the layer.
func TestPullStreamVerification(t *testing.T) {
	layer := noiseLayer(t, 2, "v", 8, 16<<10)
	blob, _ := layerDigests(t, layer)
	good := testImage(t, v1.Config{}, layer)
	cf, err := good.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	wrongDiffID, err := mutate.ConfigFile(good, cf)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(at func(n int) int) func(w http.ResponseWriter, r *http.Request, body []byte) {
		return func(w http.ResponseWriter, r *http.Request, body []byte) {
			bad := []byte(string(body))
			bad[at(len(bad))] ^= 0xff
			w.Header().Set("Content-Length", itoa(len(bad)))
			w.Write(bad)
		}
	}
	tests := []struct {
		desc  string
		img   v1.Image
		serve func(w http.ResponseWriter, r *http.Request, body []byte)
	}{
		{desc: "blob corrupt in its last byte (gzip trailer)", img: good, serve: flip(func(n int) int { return n - 1 })},
		{desc: "blob corrupt in the middle", img: good, serve: flip(func(n int) int { return n / 2 })},
		{desc: "blob longer than declared", img: good, serve: func(w http.ResponseWriter, r *http.Request, body []byte) {
			w.Write(append([]byte(string(body)), "trailing"...))
		}},
		{desc: "diff ID in the config does not match", img: wrongDiffID},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var wrap func(http.Handler) http.Handler
			if tc.serve != nil {
				wrap = blobFault(blob, tc.serve)
			}
			reg := startRegistry(t, wrap)
			reg.push(t, "verify:1", tc.img)
			s := newTestStore(t, Options{})
			_, err := s.Pull(context.Background(), reg.host+"/verify:1", nil)
			if !errdefs.IsDataLoss(err) {
				t.Fatalf("err = %v, want DataLoss", err)
			}
			t.Logf("error: %v", err)
			if len(s.List()) != 0 {
				t.Errorf("image recorded after failed pull")
			}
			assertNoLayerLeft(t, s, blob)
		})
	}
}

// TestPullCancelMidStream checks that a pull cancelled while a layer is
// half downloaded and half unpacked leaves nothing of it.
func TestPullCancelMidStream(t *testing.T) {
	layer := noiseLayer(t, 3, "c", 16, 32<<10)
	blob, _ := layerDigests(t, layer)
	reg := startRegistry(t, blobFault(blob, stallAfter(0.5, nil)))
	reg.push(t, "cancel:1", testImage(t, v1.Config{}, layer))
	s := newTestStore(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(ctx, reg.host+"/cancel:1", nil)
		done <- err
	}()
	waitFor(t, "the layer is being unpacked", func() bool { return unpackingFile(s, "c/f000") })
	if entries, _ := os.ReadDir(filepath.Join(s.content.dir, "ingest")); len(entries) != 1 {
		t.Errorf("ingest holds %d files mid-download, want 1", len(entries))
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertNoLayerLeft(t, s, blob)
}

// TestPullSharedLayerUnpackedOnce checks that two images sharing a layer,
// pulled at once, download and unpack it once.
func TestPullSharedLayerUnpackedOnce(t *testing.T) {
	shared := noiseLayer(t, 4, "shared", 4, 16<<10)
	blob, diffID := layerDigests(t, shared)
	release := make(chan struct{})
	reg := startRegistry(t, blobFault(blob, stallAfter(0.5, release)))
	a := testImage(t, v1.Config{Cmd: []string{"a"}}, shared, testLayer(t, []tarEntry{{name: "a", body: "a"}}))
	b := testImage(t, v1.Config{Cmd: []string{"b"}}, shared, testLayer(t, []tarEntry{{name: "b", body: "b"}}))
	reg.push(t, "a:1", a)
	reg.push(t, "b:1", b)
	s := newTestStore(t, Options{})
	unpacks := countUnpacks(s)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, ref := range []string{"a:1", "b:1"} {
		wg.Go(func() {
			_, err := s.Pull(context.Background(), reg.host+"/"+ref, nil)
			errs <- err
		})
	}
	// Both pulls have their own layers by now, and wait for the shared one.
	waitFor(t, "both images' own layers are unpacked", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return len(s.layers) == 2
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.gets(blob); n != 1 {
		t.Errorf("shared blob fetched %d times, want 1", n)
	}
	if n := unpacks.Load(); n != 3 {
		t.Errorf("%d unpacks, want 3", n)
	}
	if s.layer(diffID) == nil || len(s.layers) != 3 {
		t.Errorf("layers %d, want 3 with the shared one", len(s.layers))
	}
	if entries, _ := filepath.Glob(filepath.Join(s.layersDir(), "*.json")); len(entries) != 3 {
		t.Errorf("layer records %v, want 3", entries)
	}
	assertNoPartial(t, s)
}

// TestBlobFollower checks that a reader following a blob being written sees
// exactly the bytes written, and the end only as the writer ends: io.EOF
// after a verified blob, the writer's error otherwise, never a clean end
// of a failed download.
func TestBlobFollower(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		desc    string
		chunks  []string
		end     error
		wantErr error
	}{
		{desc: "complete blob", chunks: []string{"abc", "", "defgh", strings.Repeat("x", 100<<10)}},
		{desc: "empty blob", chunks: nil},
		{desc: "download fails midway", chunks: []string{"abc", "def"}, end: errBoom, wantErr: errBoom},
		{desc: "download fails at once", end: errBoom, wantErr: errBoom},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := newContentStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			w, err := c.writer()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			fl := newBlobFollower(w)
			go func() {
				for _, chunk := range tc.chunks {
					time.Sleep(time.Millisecond)
					if _, err := w.Write([]byte(chunk)); err != nil {
						fl.finish(err)
						return
					}
				}
				fl.finish(tc.end)
			}()
			got, err := io.ReadAll(fl)
			if errorCase(t, err, tc.wantErr) {
				return
			}
			if want := strings.Join(tc.chunks, ""); string(got) != want {
				t.Errorf("read %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestSyncGroup(t *testing.T) {
	var g syncGroup
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- g.sync(dir) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := g.sync(filepath.Join(dir, "missing")); err == nil {
		t.Error("sync of a missing dir succeeded")
	}
}
