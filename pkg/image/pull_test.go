package image

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func baseLayer(t testing.TB) v1.Layer {
	return testLayer(t, []tarEntry{
		{name: "etc/", typ: 0x35},
		{name: "etc/os-release", body: "ID=test\n"},
		{name: "bin/sh", body: "#!shell", mode: 0o755},
	})
}

func TestPullThroughMirror(t *testing.T) {
	reg := startRegistry(t, nil)
	cfgDir := t.TempDir()
	mirrorConfig(t, cfgDir, []string{"registry.example.test", "docker.io"}, reg.host)
	img := testImage(t, v1.Config{User: "1000:50", Env: []string{"A=1"}, Cmd: []string{"sh"}, WorkingDir: "/w",
		StopSignal: "SIGQUIT", Labels: map[string]string{"l": "v"}},
		baseLayer(t), testLayer(t, []tarEntry{{name: "app", body: "app"}}))
	manifestDigest := reg.push(t, "team/app:v1", img).String()
	reg.push(t, "library/busybox:latest", img)
	id := configDigest(t, img)

	preg := prometheus.NewRegistry()
	s := newTestStore(t, Options{RegistryConfigDir: cfgDir, Registerer: preg})
	ctx := context.Background()

	got, err := s.Pull(ctx, "registry.example.test/team/app:v1", nil)
	if err != nil {
		t.Fatalf("pull by tag: %v", err)
	}
	if got.ID != id {
		t.Errorf("ID %s, want config digest %s", got.ID, id)
	}
	if want := []string{"registry.example.test/team/app:v1"}; !slices.Equal(got.RepoTags, want) {
		t.Errorf("RepoTags %v, want %v", got.RepoTags, want)
	}
	if want := []string{"registry.example.test/team/app@" + manifestDigest}; !slices.Equal(got.RepoDigests, want) {
		t.Errorf("RepoDigests %v, want %v", got.RepoDigests, want)
	}
	m, _ := img.Manifest()
	wantSize := m.Config.Size
	for _, l := range m.Layers {
		wantSize += l.Size
	}
	if got.Size != wantSize {
		t.Errorf("Size %d, want %d", got.Size, wantSize)
	}
	if got.Config.User != "1000:50" || got.Config.WorkingDir != "/w" || got.Config.StopSignal != "SIGQUIT" ||
		!slices.Equal(got.Config.Cmd, []string{"sh"}) || got.Config.Labels["l"] != "v" || len(got.DiffIDs) != 2 {
		t.Errorf("config not kept: %+v diffIDs %v", got.Config, got.DiffIDs)
	}
	if uid, name := got.User(); uid == nil || *uid != 1000 || name != "" {
		t.Errorf("User() = %v %q", uid, name)
	}

	// By digest: same image, digest kept.
	byDigest, err := s.Pull(ctx, "registry.example.test/team/app@"+manifestDigest, nil)
	if err != nil || byDigest.ID != id {
		t.Fatalf("pull by digest: %v %v", byDigest, err)
	}
	// Docker Hub short names normalise, whatever mirror served them.
	bb, err := s.Pull(ctx, "busybox", nil)
	if err != nil {
		t.Fatalf("pull busybox: %v", err)
	}
	if !slices.Contains(bb.RepoTags, "docker.io/library/busybox:latest") {
		t.Errorf("busybox RepoTags %v", bb.RepoTags)
	}

	for _, ref := range []string{
		id, strings.TrimPrefix(id, "sha256:"), id[:19], strings.TrimPrefix(id, "sha256:")[:12],
		"registry.example.test/team/app:v1", "registry.example.test/team/app@" + manifestDigest,
		"busybox", "docker.io/library/busybox:latest", "library/busybox",
	} {
		if img, err := s.Get(ref); err != nil || img.ID != id {
			t.Errorf("Get(%q) = %v, %v", ref, img, err)
		}
	}
	for ref, want := range map[string]error{
		"registry.example.test/team/app:v2": errdefs.ErrNotFound,
		"absent":                            errdefs.ErrNotFound,
		"Bad Ref":                           errdefs.ErrInvalidArgument,
		"":                                  errdefs.ErrInvalidArgument,
	} {
		if _, err := s.Get(ref); !errors.Is(err, want) {
			t.Errorf("Get(%q) err = %v, want %v", ref, err, want)
		}
	}
	if _, err := s.Pull(ctx, "registry.example.test/team/absent:v1", nil); !errdefs.IsNotFound(err) {
		t.Errorf("pull absent: %v, want NotFound", err)
	}
	if _, err := s.Pull(ctx, "UPPER/case", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("pull malformed: %v, want InvalidArgument", err)
	}
	if n := testutil.ToFloat64(s.metrics.pulls.WithLabelValues("success")); n != 3 {
		t.Errorf("success pulls metric %v, want 3", n)
	}
	if n := testutil.ToFloat64(s.metrics.pulls.WithLabelValues("failure")); n != 2 {
		t.Errorf("failed pulls metric %v, want 2", n)
	}
	if n := testutil.ToFloat64(s.metrics.bytes); n < float64(wantSize) {
		t.Errorf("bytes metric %v, want >= %d", n, wantSize)
	}
	if n := testutil.CollectAndCount(preg, "cri_shim_image_pull_duration_seconds"); n != 1 {
		t.Errorf("duration histogram not registered: %d", n)
	}
}

func TestPullMultiArch(t *testing.T) {
	reg := startRegistry(t, nil)
	amd := testImage(t, v1.Config{Cmd: []string{"amd64"}}, baseLayer(t))
	arm := testImage(t, v1.Config{Cmd: []string{"arm64"}}, baseLayer(t), testLayer(t, []tarEntry{{name: "arm", body: "x"}}))
	att := testImage(t, v1.Config{Cmd: []string{"attestation"}})
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	idxDigest := reg.pushIndex(t, "multi:1", idx).String()
	for _, tc := range []struct {
		platform v1.Platform
		want     v1.Image
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, amd},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, arm},
	} {
		t.Run(tc.platform.Architecture, func(t *testing.T) {
			s := newTestStore(t, Options{Platform: tc.platform})
			got, err := s.Pull(context.Background(), reg.host+"/multi:1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := configDigest(t, tc.want); got.ID != want {
				t.Errorf("ID %s, want %s", got.ID, want)
			}
			md, _ := tc.want.Digest()
			if got.ManifestDigest != md.String() {
				t.Errorf("ManifestDigest %s, want %s", got.ManifestDigest, md)
			}
			if want := reg.host + "/multi@" + idxDigest; !slices.Equal(got.RepoDigests, []string{want}) {
				t.Errorf("RepoDigests %v, want the index digest %s", got.RepoDigests, want)
			}
		})
	}
	s := newTestStore(t, Options{Platform: v1.Platform{OS: "linux", Architecture: "s390x"}})
	if _, err := s.Pull(context.Background(), reg.host+"/multi:1", nil); !errdefs.IsNotFound(err) {
		t.Errorf("pull for absent platform: %v, want NotFound", err)
	}
}

func TestListRemove(t *testing.T) {
	reg := startRegistry(t, nil)
	shared := baseLayer(t)
	a := testImage(t, v1.Config{Cmd: []string{"a"}}, shared, testLayer(t, []tarEntry{{name: "a", body: "a"}}))
	b := testImage(t, v1.Config{Cmd: []string{"b"}}, shared)
	c := testImage(t, v1.Config{Cmd: []string{"c"}}, testLayer(t, []tarEntry{{name: "c", body: "c"}}))
	reg.push(t, "a:1", a)
	reg.push(t, "a:2", a)
	reg.push(t, "b:1", b)
	reg.push(t, "pause:3", c)
	var inUse sync.Map
	s := newTestStore(t, Options{Pinned: []string{reg.host + "/pause:3"}, InUse: func(id string) bool { _, ok := inUse.Load(id); return ok }})
	ctx := context.Background()
	for _, ref := range []string{"a:1", "a:2", "b:1", "pause:3"} {
		if _, err := s.Pull(ctx, reg.host+"/"+ref, nil); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
	}
	list := s.List()
	if len(list) != 3 {
		t.Fatalf("List has %d images, want 3", len(list))
	}
	ga, _ := s.Get(reg.host + "/a:1")
	if want := []string{reg.host + "/a:1", reg.host + "/a:2"}; !slices.Equal(ga.RepoTags, want) {
		t.Errorf("a RepoTags %v, want %v", ga.RepoTags, want)
	}
	if p, _ := s.Get(reg.host + "/pause:3"); !p.Pinned {
		t.Errorf("pause not pinned")
	}
	if err := s.Remove(ctx, reg.host+"/pause:3"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove pinned: %v, want FailedPrecondition", err)
	}
	inUse.Store(ga.ID, true)
	if err := s.Remove(ctx, reg.host+"/a:1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove in use: %v, want FailedPrecondition", err)
	}
	inUse.Delete(ga.ID)
	layersBefore := len(s.layers)

	// Removing one tag removes the image and all its names.
	if err := s.Remove(ctx, reg.host+"/a:1"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{reg.host + "/a:2", ga.ID} {
		if _, err := s.Get(ref); !errdefs.IsNotFound(err) {
			t.Errorf("Get(%s) after remove: %v", ref, err)
		}
	}
	if len(s.layers) != layersBefore-1 {
		t.Errorf("layers %d, want %d: a's own layer removed, the shared one kept", len(s.layers), layersBefore-1)
	}
	am, _ := a.Manifest()
	if s.content.has(am.Layers[1].Digest.String()) || s.content.has(am.Config.Digest.String()) {
		t.Errorf("a's blobs not collected")
	}
	if !s.content.has(am.Layers[0].Digest.String()) {
		t.Errorf("shared layer blob collected")
	}
	if err := s.Remove(ctx, reg.host+"/a:1"); err != nil {
		t.Errorf("remove again: %v", err)
	}
	if err := s.Remove(ctx, "Not/Valid"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("remove malformed: %v", err)
	}
	// Remove by ID.
	gb, _ := s.Get(reg.host + "/b:1")
	if err := s.Remove(ctx, gb.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(s.List()); n != 1 {
		t.Errorf("%d images left, want 1", n)
	}
	if len(s.layers) != 1 {
		t.Errorf("%d layers left, want 1", len(s.layers))
	}

	// A tag moves to the image it now names.
	reg.push(t, "pause:3", b)
	if _, err := s.Pull(ctx, reg.host+"/pause:3", nil); err != nil {
		t.Fatal(err)
	}
	old, err := s.Get(configDigest(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if len(old.RepoTags) != 0 {
		t.Errorf("old image keeps moved tag: %v", old.RepoTags)
	}
	assertNoPartial(t, s)

	// Pin by reference, persistently.
	if err := s.Pin(configDigest(t, c)); err != nil {
		t.Fatal(err)
	}
	s2 := newTestStore(t, Options{Root: s.root})
	if err := s2.Remove(ctx, configDigest(t, c)); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove pinned after reload: %v", err)
	}
}

// basicAuth demands user u, password p.
func basicAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"auth required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestPullAuth(t *testing.T) {
	reg := startRegistry(t, basicAuth)
	reg.push(t, "private:1", testImage(t, v1.Config{}, baseLayer(t)))
	ref := reg.host + "/private:1"
	tests := []struct {
		desc string
		auth *Auth
		ok   bool
	}{
		{desc: "no credentials", auth: nil},
		{desc: "wrong password", auth: &Auth{Username: "u", Password: "wrong"}},
		{desc: "credentials for another registry", auth: &Auth{Username: "u", Password: "p", ServerAddress: "https://other.example.com"}},
		{desc: "username and password", auth: &Auth{Username: "u", Password: "p"}, ok: true},
		{desc: "base64 auth", auth: &Auth{Auth: base64.StdEncoding.EncodeToString([]byte("u:p"))}, ok: true},
		{desc: "server address matches", auth: &Auth{Username: "u", Password: "p", ServerAddress: "http://" + reg.host}, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newTestStore(t, Options{})
			_, err := s.Pull(context.Background(), ref, tc.auth)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsUnauthorized(err) {
				t.Fatalf("err = %v, want Unauthenticated", err)
			}
			if len(s.List()) != 0 {
				t.Errorf("image recorded after failed pull")
			}
		})
	}
	s := newTestStore(t, Options{})
	if _, err := s.Pull(context.Background(), ref, &Auth{Auth: "%%%"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("malformed auth field: %v, want InvalidArgument", err)
	}
}

// blobFault rewrites the body of blob GETs for digest.
func blobFault(digest string, serve func(w http.ResponseWriter, r *http.Request, body []byte)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &bodyRecorder{header: http.Header{}}
			next.ServeHTTP(rec, r)
			serve(w, r, rec.body)
		})
	}
}

type bodyRecorder struct {
	header http.Header
	body   []byte
}

func (b *bodyRecorder) Header() http.Header { return b.header }
func (b *bodyRecorder) WriteHeader(int)     {}
func (b *bodyRecorder) Write(p []byte) (int, error) {
	b.body = append(b.body, p...)
	return len(p), nil
}

func TestPullFaults(t *testing.T) {
	noise := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	// Incompressible, so the blob is as big as the file.
	layer := testLayer(t, []tarEntry{{name: "big", body: string(noise)}})
	img := testImage(t, v1.Config{}, baseLayer(t), layer)
	ld, _ := layer.Digest()
	ldigest := ld.String()
	tests := []struct {
		desc    string
		opts    Options
		serve   func(w http.ResponseWriter, r *http.Request, body []byte)
		wantErr func(error) bool
	}{
		{
			desc: "stall trips the progress timeout",
			opts: Options{ProgressTimeout: 300 * time.Millisecond},
			serve: func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Length", itoa(len(body)))
				w.Write(body[:len(body)/2])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			wantErr: func(err error) bool { return errors.Is(err, ErrStalled) && errors.Is(err, context.DeadlineExceeded) },
		},
		{
			desc: "trickle falls under the minimum throughput",
			opts: Options{ProgressTimeout: 5 * time.Second, MinThroughput: 1 << 20, ThroughputWindow: 300 * time.Millisecond},
			serve: func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Length", itoa(len(body)))
				for i := 0; i < len(body); i += 16 {
					if _, err := w.Write(body[i:min(i+16, len(body))]); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			},
			wantErr: func(err error) bool { return errors.Is(err, ErrStalled) },
		},
		{
			desc: "corrupt blob",
			serve: func(w http.ResponseWriter, r *http.Request, body []byte) {
				bad := []byte(strings.Repeat("!", len(body)))
				w.Write(bad)
			},
			wantErr: errdefs.IsDataLoss,
		},
		{
			desc: "truncated blob",
			serve: func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Length", itoa(len(body)))
				w.Write(body[:len(body)-100])
			},
			wantErr: errdefs.IsDataLoss,
		},
		{
			desc: "registry error",
			serve: func(w http.ResponseWriter, r *http.Request, body []byte) {
				http.Error(w, "boom", http.StatusForbidden)
			},
			wantErr: errdefs.IsPermissionDenied,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			reg := startRegistry(t, blobFault(ldigest, tc.serve))
			reg.push(t, "faulty:1", img)
			s := newTestStore(t, tc.opts)
			start := time.Now()
			_, err := s.Pull(context.Background(), reg.host+"/faulty:1", nil)
			if !tc.wantErr(err) {
				t.Fatalf("err = %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("pull took %s", d)
			}
			t.Logf("error: %v", err)
			if len(s.List()) != 0 {
				t.Errorf("image recorded after failed pull")
			}
			if s.content.has(ldigest) {
				t.Errorf("faulty blob stored")
			}
			assertNoPartial(t, s)
			// A later pull from a healthy registry completes: no partial
			// state got in the way.
			good := startRegistry(t, nil)
			good.push(t, "faulty:1", img)
			if _, err := s.Pull(context.Background(), good.host+"/faulty:1", nil); err != nil {
				t.Fatalf("healthy pull after failure: %v", err)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestConcurrentPulls(t *testing.T) {
	// A slow blob keeps the first download in flight while the others
	// arrive.
	gate := make(chan struct{})
	layer := testLayer(t, []tarEntry{{name: "f", body: "content"}})
	ld, _ := layer.Digest()
	reg := startRegistry(t, blobFault(ld.String(), func(w http.ResponseWriter, r *http.Request, body []byte) {
		<-gate
		w.Write(body)
	}))
	img := testImage(t, v1.Config{}, baseLayer(t), layer)
	reg.push(t, "same:1", img)
	reg.push(t, "same:2", img)
	s := newTestStore(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		ref := reg.host + "/same:1"
		if i%2 == 1 {
			ref = reg.host + "/same:2" // another name: shares blobs, not the pull
		}
		wg.Go(func() {
			_, err := s.Pull(context.Background(), ref, nil)
			errs <- err
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, _ := img.Manifest()
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if n := reg.gets(d.Digest.String()); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d.Digest, n)
		}
	}
	got, _ := s.Get(configDigest(t, img))
	if len(got.RepoTags) != 2 {
		t.Errorf("RepoTags %v, want both", got.RepoTags)
	}
}

func TestReload(t *testing.T) {
	reg := startRegistry(t, nil)
	img := testImage(t, v1.Config{Cmd: []string{"x"}}, baseLayer(t))
	reg.push(t, "r:1", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	if _, err := s.Pull(ctx, reg.host+"/r:1", nil); err != nil {
		t.Fatal(err)
	}
	// Debris of a crash, and an unreadable record.
	for _, p := range []string{filepath.Join(s.content.dir, "ingest", "blob-1"), filepath.Join(s.imagesDir(), "0000.json")} {
		if err := os.WriteFile(p, []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(s.layersDir(), ".tmp-123"), filepath.Join(s.layersDir(), "999")} {
		if err := os.MkdirAll(filepath.Join(d, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	orphan := digestOf([]byte("orphan"))
	if err := s.content.writeBlob(orphan, 6, strings.NewReader("orphan")); err != nil {
		t.Fatal(err)
	}
	s2, err := New(ctx, Options{Root: s.root})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(reg.host + "/r:1")
	if err != nil || got.ID != configDigest(t, img) {
		t.Fatalf("after reload: %v %v", got, err)
	}
	if len(s2.List()) != 1 {
		t.Errorf("List %d images", len(s2.List()))
	}
	for _, p := range []string{filepath.Join(s.layersDir(), ".tmp-123"), filepath.Join(s.layersDir(), "999")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s not cleaned up", p)
		}
	}
	if s2.content.has(orphan) {
		t.Errorf("unreferenced blob kept")
	}
	assertNoPartial(t, s2)
	u, err := s2.FsUsage()
	if err != nil || u.UsedBytes == 0 || u.InodesUsed == 0 || u.Mountpoint != s.root {
		t.Errorf("FsUsage = %+v, %v", u, err)
	}
	if _, err := New(ctx, Options{Root: s.root, Pinned: []string{"Bad Ref"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad pinned ref: %v", err)
	}
	if _, err := New(ctx, Options{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty root: %v", err)
	}
	_ = io.Discard
}

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		user string
		uid  int64
		name string
	}{
		{"", -1, ""},
		{"1000", 1000, ""},
		{"0", 0, ""},
		{"1003:1004", 1003, ""},
		{"www-data", -1, "www-data"},
		{"www-data:1004", -1, "www-data"},
		{"-1", -1, "-1"},
	} {
		uid, name := ParseUser(tc.user)
		gotUID := int64(-1)
		if uid != nil {
			gotUID = *uid
		}
		if gotUID != tc.uid || name != tc.name {
			t.Errorf("ParseUser(%q) = %d %q, want %d %q", tc.user, gotUID, name, tc.uid, tc.name)
		}
	}
}
