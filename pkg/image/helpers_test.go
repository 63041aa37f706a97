package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// newTestStore opens a store in a temp dir and, whatever happens, unmounts
// every rootfs it mounted when the test ends.
func newTestStore(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { unmountUnder(t, s.root) })
	return s
}

// unmountUnder unmounts every mount below dir (rootfs overlays of a test).
func unmountUnder(t testing.TB, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			if mp := unescapeMountinfo(f[4]); strings.HasPrefix(mp, dir+"/") {
				mounts = append(mounts, mp)
			}
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unmountAll(mounts[i]); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(unescapeMountinfo(f[4]), dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// testLayer makes a gzip layer from crafted entries.
func testLayer(t testing.TB, entries []tarEntry, opts ...tarball.LayerOption) v1.Layer {
	t.Helper()
	raw := makeTar(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testImage(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Config(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// testRegistry is an in-process registry on loopback. push writes to it
// directly; pulls go through the wrap middleware (auth, faults, counting).
type testRegistry struct {
	host     string // host:port pulls use
	pushHost string
	mu       sync.Mutex
	blobGETs map[string]int // digest -> GET count
}

func startRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{blobGETs: map[string]int{}}
	counting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.mu.Lock()
			tr.blobGETs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			tr.mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	})
	var h http.Handler = counting
	if wrap != nil {
		h = wrap(counting)
	}
	pull := httptest.NewServer(h)
	push := httptest.NewServer(reg)
	t.Cleanup(pull.Close)
	t.Cleanup(push.Close)
	tr.host = strings.TrimPrefix(pull.URL, "http://")
	tr.pushHost = strings.TrimPrefix(push.URL, "http://")
	return tr
}

func (r *testRegistry) push(t testing.TB, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(r.pushHost+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *testRegistry) pushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(r.pushHost+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push index %s: %v", repoTag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *testRegistry) gets(d string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGETs[d]
}

// mirrorConfig writes <dir>/<upstream>/hosts.toml sending upstream to the
// test registry, with an unreachable server so that a failing mirror never
// sends the test to the network.
func mirrorConfig(t *testing.T, dir string, upstreams []string, mirror string) {
	t.Helper()
	for _, u := range upstreams {
		d := filepath.Join(dir, u)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://127.0.0.1:1", "http://"+mirror)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// assertNoPartial checks that a failed operation left no ingest file, no
// half-unpacked layer and nothing in trash.
func assertNoPartial(t *testing.T, s *Store) {
	t.Helper()
	for _, dir := range []string{filepath.Join(s.content.dir, "ingest"), s.trashDir()} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s not empty: %v", dir, entries)
		}
	}
	entries, _ := os.ReadDir(s.layersDir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("half-unpacked layer left: %s", e.Name())
		}
	}
}

// errorCase checks a table case's error: err must match want (errors.Is)
// or, with want nil, be nil. It returns true when the case ends there (it
// wanted an error).
func errorCase(t *testing.T, err, want error) bool {
	t.Helper()
	if want != nil {
		if !errors.Is(err, want) {
			t.Fatalf("err = %v, want %v", err, want)
		}
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}
