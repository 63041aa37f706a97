package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// critestImages are the references critest v1.36.0 pulls on linux/amd64, from
// pkg/validate/consts.go, pkg/framework/util.go,
// pkg/validate/security_context_linux.go, pkg/validate/multi_container_linux.go
// and pkg/benchmark/image.go ("test-image-digest" is pulled by an upstream
// digest that cannot exist offline; its spec is skipped).
var critestImages = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"gcr.io/k8s-staging-cri-tools/test-image-latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-digest",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group",
	"public.ecr.aws/docker/library/busybox:1.35.0-glibc",
	"public.ecr.aws/docker/library/busybox:1-uclibc",
	"public.ecr.aws/docker/library/busybox:1",
	"public.ecr.aws/docker/library/busybox:1-glibc",
	"public.ecr.aws/docker/library/busybox:1-musl",
	SandboxImage,
}

var (
	catalogOnce   sync.Once
	catalogImages []*image
	catalogErr    error
)

// needHost skips (or, in CI, fails) when the host lacks what a build needs:
// Debian's busybox (hack/install-deps.sh installs it) and the go tool.
func needHost(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox (apt-get install busybox)")
	}
	if _, err := goCommand(""); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot build the test images: missing %s", strings.Join(missing, ", "))
	}
	t.Skipf("cannot build the test images: missing %s", strings.Join(missing, ", "))
}

// catalog builds the images once per test binary, with the programs cached
// where `testimages` keeps them.
func catalog(t *testing.T) []*image {
	t.Helper()
	needHost(t)
	catalogOnce.Do(func() {
		catalogImages, catalogErr = buildCatalog(buildOptions{busybox: "/bin/busybox", cacheDir: defaultCacheDir()})
	})
	if catalogErr != nil {
		t.Fatal(catalogErr)
	}
	return catalogImages
}

func byName(images []*image) map[string]*image {
	m := map[string]*image{}
	for _, img := range images {
		for _, n := range img.names {
			m[n] = img
		}
	}
	return m
}

// normalize adds the implicit :latest, as a runtime does.
func normalize(ref string) string {
	if i := strings.LastIndexByte(ref, '/'); !strings.Contains(ref[i+1:], ":") {
		return ref + ":latest"
	}
	return ref
}

func TestReproducible(t *testing.T) {
	first := catalog(t)
	// A second build from an empty program cache also proves that the go
	// builds of progs/ are reproducible.
	cache := defaultCacheDir()
	if !testing.Short() {
		cache = t.TempDir()
	}
	second, err := buildCatalog(buildOptions{busybox: "/bin/busybox", cacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(second) {
		t.Fatalf("first build has %d images, second %d", len(first), len(second))
	}
	for i := range first {
		a, b := first[i], second[i]
		if strings.Join(a.names, ",") != strings.Join(b.names, ",") || a.digest != b.digest {
			t.Errorf("%v: digest %s, then %s", a.names, a.digest, b.digest)
		}
	}
}

func TestEveryCritestImageIsServed(t *testing.T) {
	images := byName(catalog(t))
	for _, ref := range critestImages {
		if images[normalize(ref)] == nil {
			t.Errorf("critest pulls %s, which is not built", ref)
		}
	}
	for _, same := range [][]string{
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
		{crTools + "test-image-tags:1", crTools + "test-image-tags:2", crTools + "test-image-tags:3"},
	} {
		for _, n := range same[1:] {
			if images[n] != images[same[0]] {
				t.Errorf("%s and %s must be one image", same[0], n)
			}
		}
	}
	// Every other name is a distinct image.
	seen := map[v1.Hash]string{}
	for _, img := range catalog(t) {
		if other, dup := seen[img.digest]; dup {
			t.Errorf("%s and %s have the same digest", other, img.names[0])
		}
		seen[img.digest] = img.names[0]
	}
}

// fsEntry is a file of an image's flattened file system.
type fsEntry struct {
	hdr  *tar.Header
	data []byte
}

type imageFS struct {
	files  map[string]fsEntry
	config v1.ConfigFile
}

// flatten applies the layers of img in order (no whiteouts are used).
func flatten(t *testing.T, img *image) imageFS {
	t.Helper()
	out := imageFS{files: map[string]fsEntry{}}
	if err := json.Unmarshal(img.config, &out.config); err != nil {
		t.Fatal(err)
	}
	for _, l := range img.layers {
		zr, err := gzip.NewReader(bytes.NewReader(l.blob))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out.files["/"+strings.TrimSuffix(h.Name, "/")] = fsEntry{hdr: h, data: b}
		}
	}
	return out
}

// file returns a regular file, following a hard link to its target.
func (f imageFS) file(t *testing.T, p string) fsEntry {
	t.Helper()
	e, ok := f.files[p]
	if !ok {
		t.Fatalf("no %s in the image", p)
	}
	if e.hdr.Typeflag == tar.TypeLink {
		target, ok := f.files["/"+e.hdr.Linkname]
		if !ok {
			t.Fatalf("%s links to missing %s", p, e.hdr.Linkname)
		}
		return target
	}
	if e.hdr.Typeflag != tar.TypeReg {
		t.Fatalf("%s is not a regular file (type %c)", p, e.hdr.Typeflag)
	}
	return e
}

func (f imageFS) executable(t *testing.T, p string) {
	t.Helper()
	if e := f.file(t, p); e.hdr.Mode&0o111 == 0 || len(e.data) == 0 {
		t.Errorf("%s is not an executable (mode %o, %d bytes)", p, e.hdr.Mode, len(e.data))
	}
}

func (f imageFS) contains(t *testing.T, p string, lines ...string) {
	t.Helper()
	data := "\n" + string(f.file(t, p).data)
	for _, l := range lines {
		if !strings.Contains(data, "\n"+l+"\n") {
			t.Errorf("%s has no line %q", p, l)
		}
	}
}

func (f imageFS) cmd(t *testing.T, entrypoint, cmd []string) {
	t.Helper()
	c := f.config.Config
	if strings.Join(c.Entrypoint, " ") != strings.Join(entrypoint, " ") || strings.Join(c.Cmd, " ") != strings.Join(cmd, " ") {
		t.Errorf("Entrypoint %q Cmd %q, want %q %q", c.Entrypoint, c.Cmd, entrypoint, cmd)
	}
}

func (f imageFS) user(t *testing.T, user string) {
	t.Helper()
	if f.config.Config.User != user {
		t.Errorf("User %q, want %q", f.config.Config.User, user)
	}
}

// busyboxLike checks what every image built on the busybox base must have.
func busyboxLike(t *testing.T, f imageFS) {
	t.Helper()
	for _, a := range []string{"sh", "top", "sleep", "echo", "cat", "id", "hostname", "ls", "touch", "mount",
		"grep", "dd", "ping", "brctl", "netstat", "chmod", "pidof", "mkdir", "["} {
		e, ok := f.files["/bin/"+a]
		if !ok || e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "bin/busybox" {
			t.Errorf("/bin/%s is not a hard link to /bin/busybox", a)
		}
	}
	f.executable(t, "/bin/busybox")
	f.executable(t, "/bin/pgrep")
	f.executable(t, "/bin/ipcs")
	if e := f.files["/tmp"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != 0o1777 {
		t.Errorf("/tmp is not a directory with mode 1777")
	}
	f.contains(t, "/etc/passwd",
		"root:x:0:0:root:/root:/bin/sh",
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false",
		"www-data:x:33:33:www-data:/var/www:/bin/false",
		"nobody:x:65534:65534:nobody:/home:/bin/false")
	f.contains(t, "/etc/group", "root:x:0:", "daemon:x:1:", "www-data:x:33:", "nogroup:x:65534:")

	// The dynamic loader and every library busybox needs are in the image.
	bb := f.file(t, "/bin/busybox")
	exe, err := elf.NewFile(bytes.NewReader(bb.data))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			f.executable(t, strings.TrimRight(string(b), "\x00"))
		}
	}
	libs, err := exe.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		found := false
		for _, d := range libDirs {
			if _, ok := f.files[filepath.Join(d, l)]; ok {
				found = true
			}
		}
		if !found {
			t.Errorf("busybox needs %s, which is not in the image", l)
		}
	}
	if env := strings.Join(f.config.Config.Env, " "); !strings.Contains(env, "PATH=") || !strings.Contains(env, "/bin") {
		t.Errorf("Env %q has no PATH with /bin", f.config.Config.Env)
	}
	if f.config.Architecture != "amd64" || f.config.OS != "linux" {
		t.Errorf("platform %s/%s, want linux/amd64", f.config.OS, f.config.Architecture)
	}
}

func TestImageContents(t *testing.T) {
	images := byName(catalog(t))
	for _, tc := range []struct {
		image string
		check func(*testing.T, imageFS)
	}{
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", func(t *testing.T, f imageFS) {
			busyboxLike(t, f)
			f.cmd(t, nil, []string{"sh"})
			f.user(t, "")
		}},
		{"registry.k8s.io/e2e-test-images/nginx:1.14-2", func(t *testing.T, f imageFS) {
			busyboxLike(t, f)
			f.executable(t, "/usr/sbin/nginx")
			f.cmd(t, nil, []string{"nginx", "-g", "daemon off;"})
		}},
		{crTools + "hostnet-nginx-amd64:latest", func(t *testing.T, f imageFS) {
			f.executable(t, "/usr/sbin/nginx")
			f.contains(t, "/etc/nginx/conf.d/default.conf", "    listen 12003;")
			f.cmd(t, nil, []string{"nginx", "-g", "daemon off;"})
		}},
		{"registry.k8s.io/e2e-test-images/httpd:2.4.39-4", func(t *testing.T, f imageFS) {
			busyboxLike(t, f)
			f.executable(t, "/usr/local/apache2/bin/httpd")
			f.cmd(t, nil, []string{"httpd", "-DFOREGROUND"})
			if !strings.Contains(strings.Join(f.config.Config.Env, " "), "/usr/local/apache2/bin") {
				t.Errorf("PATH lacks /usr/local/apache2/bin: %q", f.config.Config.Env)
			}
		}},
		{"registry.k8s.io/e2e-test-images/nonewprivs:1.3", func(t *testing.T, f imageFS) {
			nnp := f.file(t, "/usr/local/bin/nnp")
			if nnp.hdr.Mode&0o4000 == 0 || nnp.hdr.Uid != 0 || nnp.hdr.Mode&0o001 == 0 {
				t.Errorf("/usr/local/bin/nnp: mode %o uid %d, want setuid root, executable by all", nnp.hdr.Mode, nnp.hdr.Uid)
			}
			f.cmd(t, nil, []string{"/usr/local/bin/nnp"})
		}},
		{"registry.k8s.io/pause:3.9", func(t *testing.T, f imageFS) {
			f.executable(t, "/pause")
			f.cmd(t, []string{"/pause"}, nil)
			f.user(t, "65535:65535")
		}},
		{SandboxImage, func(t *testing.T, f imageFS) {
			f.executable(t, "/pause")
			f.cmd(t, []string{"/pause"}, nil)
		}},
		{crTools + "test-image-tag:test", func(t *testing.T, f imageFS) {
			busyboxLike(t, f)
			f.cmd(t, nil, []string{"sh"}) // the image ID spec runs it with its own command
		}},
		{crTools + "test-image-user-uid:latest", func(t *testing.T, f imageFS) { f.user(t, "1002") }},
		{crTools + "test-image-user-username:latest", func(t *testing.T, f imageFS) { f.user(t, "www-data") }},
		{crTools + "test-image-user-uid-group:latest", func(t *testing.T, f imageFS) { f.user(t, "1003:1004") }},
		{crTools + "test-image-user-username-group:latest", func(t *testing.T, f imageFS) { f.user(t, "www-data:1004") }},
		{crTools + "test-image-predefined-group:latest", func(t *testing.T, f imageFS) {
			busyboxLike(t, f)
			f.user(t, "1000")
			f.contains(t, "/etc/passwd", "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh")
			f.contains(t, "/etc/group", "default-user:x:1000:", "group-defined-in-image:x:50000:default-user")
		}},
		{ecr + "busybox:1-musl", func(t *testing.T, f imageFS) {
			busyboxLike(t, f)
			f.cmd(t, nil, []string{"sh"})
		}},
	} {
		t.Run(tc.image, func(t *testing.T) {
			img := images[tc.image]
			if img == nil {
				t.Fatalf("no image %s", tc.image)
			}
			tc.check(t, flatten(t, img))
		})
	}
}

// TestPrograms runs the host-safe helper programs: pgrep and ipcs.
func TestPrograms(t *testing.T) {
	needHost(t)
	progs, err := buildPrograms("", defaultCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []string{"pgrep", "ipcs", "nonewprivs"} {
		if err := os.WriteFile(filepath.Join(dir, n), progs[n], 0o755); err != nil {
			t.Fatal(err)
		}
	}

	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	out, err := exec.Command(filepath.Join(dir, "pgrep"), "-x", "sleep").Output()
	if err != nil {
		t.Fatalf("pgrep -x sleep: %v", err)
	}
	if !strings.Contains("\n"+string(out), "\n"+strconv.Itoa(sleeper.Process.Pid)+"\n") {
		t.Errorf("pgrep -x sleep printed %q, not the pid %d", out, sleeper.Process.Pid)
	}
	err = exec.Command(filepath.Join(dir, "pgrep"), "no-such-process-name-xyz").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("pgrep of nothing: %v, want exit status 1", err)
	}

	out, err = exec.Command(filepath.Join(dir, "ipcs"), "-m").Output()
	if err != nil || !strings.Contains(string(out), "------ Shared Memory Segments --------\nkey        shmid      owner") {
		t.Errorf("ipcs -m: %v\n%s", err, out)
	}

	out, err = exec.Command(filepath.Join(dir, "nonewprivs")).Output()
	if want := "Effective uid: " + strconv.Itoa(os.Geteuid()) + "\n"; err != nil || string(out) != want {
		t.Errorf("nonewprivs: %q, %v; want %q", out, err, want)
	}
}

func TestRegistry(t *testing.T) {
	images := catalog(t)
	h, err := newRegistry(images, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	named := byName(images)

	for _, tc := range []struct{ ref, path string }{
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", "/v2/e2e-test-images/busybox/manifests/1.29-2"},
		{"k8s.gcr.io/pause:3.9", "/v2/pause/manifests/3.9"},
		{crTools + "hostnet-nginx-amd64:latest", "/v2/k8s-staging-cri-tools/hostnet-nginx-amd64/manifests/latest"},
		{ecr + "busybox:1-glibc", "/v2/docker/library/busybox/manifests/1-glibc"},
	} {
		img := named[tc.ref]
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != img.digest.String() || !bytes.Equal(body, img.manifest) {
			t.Errorf("GET %s: %d, digest %s, want 200 and %s", tc.path, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), img.digest)
		}
		// Blobs are served, by digest, in the image's repository.
		repo, _, _ := repoAndTag(tc.ref)
		for _, d := range []v1.Hash{sha(img.config), img.layers[len(img.layers)-1].digest} {
			resp, err := http.Get(srv.URL + "/v2/" + repo + "/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || sha(b) != d {
				t.Errorf("GET blob %s of %s: %d", d, tc.ref, resp.StatusCode)
			}
		}
	}

	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v2/pause/manifests/3.9", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT a manifest: %d, want 405 (read-only)", resp.StatusCode)
	}
}

func TestOCILayout(t *testing.T) {
	images := catalog(t)
	dir := t.TempDir()
	if err := writeOCILayout(dir, images); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, d := range idx.Manifests {
		names[d.Annotations["io.containerd.image.name"]] = true
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Digest.Hex)); err != nil {
			t.Errorf("manifest of %s: %v", d.Annotations["io.containerd.image.name"], err)
		}
	}
	for _, ref := range critestImages {
		if !names[normalize(ref)] {
			t.Errorf("%s is not in index.json", ref)
		}
	}
}
