package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestImagesImport: `cri-shim images import` loads a docker-archive (what
// `docker save` and kind's `load docker-image` produce) into the running
// daemon, with its tag.
func TestImagesImport(t *testing.T) {
	r := sharedRuntime(t)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.com/e2e/imported:v1")
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "cri-shim"), "images", "import", "--address", r.sock, archive).CombinedOutput()
	if err != nil {
		t.Fatalf("cri-shim images import: %v\n%s", err, out)
	}
	cfgName, _ := img.ConfigName()
	if !strings.Contains(string(out), cfgName.String()) || !strings.Contains(string(out), "example.com/e2e/imported:v1") {
		t.Errorf("import printed %q, want the ID %s and the tag", out, cfgName)
	}
	st, err := r.img.ImageStatus(r.ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "example.com/e2e/imported:v1"}})
	if err != nil || st.GetImage().GetId() != cfgName.String() {
		t.Fatalf("ImageStatus after import: %v %v", st.GetImage(), err)
	}
	// From stdin too, and garbage is refused clearly.
	cmd := exec.Command(filepath.Join(binDir, "cri-shim"), "images", "import", "--address", r.sock, "-")
	cmd.Stdin = strings.NewReader("not a tarball")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("importing garbage succeeded: %s", out)
	}
	if _, err := r.img.RemoveImage(r.ctx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: cfgName.String()}}); err != nil {
		t.Errorf("RemoveImage: %v", err)
	}
	os.Remove(archive)
}

// TestContainerEvents: GetContainerEvents streams the lifecycle of a
// container with the pod's status.
func TestContainerEvents(t *testing.T) {
	r := sharedRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := r.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.podConfig("events")
	podID := r.runPod(t, cfg)
	id := r.startContainer(t, podID, cfg, container("ev", busyboxImage, "sleep", "3600"))
	if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	var got []runtimeapi.ContainerEventType
	for len(got) < len(want) {
		e, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if e.GetContainerId() != id {
			continue // other tests' events, or the sandbox's
		}
		if e.GetPodSandboxStatus().GetId() != podID {
			t.Errorf("event %v without the pod's status", e.GetContainerEventType())
		}
		got = append(got, e.GetContainerEventType())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events = %v, want %v", got, want)
		}
	}
}

// importImage loads a random two-layer image without Entrypoint or Cmd under
// ref (through `cri-shim images import`, as TestImagesImport proves it works)
// and removes it when the test ends.
func (r *testRuntime) importImage(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := img.ConfigFile(); err != nil || len(cfg.Config.Entrypoint)+len(cfg.Config.Cmd) != 0 {
		t.Fatalf("random image has a command or no config: %v %v", cfg, err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(binDir, "cri-shim"), "images", "import", "--address", r.sock, archive).CombinedOutput(); err != nil {
		t.Fatalf("cri-shim images import: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		r.img.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	})
	return ref
}
