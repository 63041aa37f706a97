package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cdiSpec is a CDI spec of kind example.com/test with one harmless device:
// the host's /dev/null under another name, an environment variable and a
// read-only mount, as device plugins and DRA drivers describe GPUs.
func cdiSpec(device, dataDir string) string {
	return fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": "example.com/test", "devices": [{"name": %q, "containerEdits": {
  "deviceNodes": [{"path": "/dev/cdi-%s", "hostPath": "/dev/null"}],
  "env": ["CDI_DEVICE=%s"],
  "mounts": [{"hostPath": %q, "containerPath": "/cdi-data", "options": ["ro", "bind"]}]}}]}`, device, device, device, dataDir)
}

// TestCDIDevices: a container's cdi_devices are resolved from the CDI spec
// directories and applied (device node, environment, mount); a device no
// spec defines fails CreateContainer with NotFound and leaves nothing; a
// spec written while cri-shim runs is used at once.
func TestCDIDevices(t *testing.T) {
	r := ownRuntime(t, "cdi")
	specDir, data := filepath.Join(r.dir, "cdi"), filepath.Join(r.dir, "cdi-data")
	for _, d := range []string{specDir, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "file"), []byte("from the CDI mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(specDir, "example-test.json"), []byte(cdiSpec("null0", data)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.args = []string{"--cdi-spec-dirs", specDir}
	r.kill9()
	r.restart(t)
	ctx := r.ctx(t)
	pod := r.podConfig("cdi")
	podID := r.runPod(t, pod)

	cfg := container("gpu", busyboxImage, "sleep", "3600")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/test=null0"}}
	id := r.startContainer(t, podID, pod, cfg)
	out, code := r.execSync(t, id, "sh", "-c", "ls -l /dev/cdi-null0 && echo x >/dev/cdi-null0 && echo wrote; echo dev=$CDI_DEVICE; cat /cdi-data/file; touch /cdi-data/x 2>&1")
	for _, want := range []string{"\ncrw", "wrote", "dev=null0", "from the CDI mount", "Read-only file system"} {
		if !strings.Contains("\n"+out, want) {
			t.Errorf("in the container (exit %d): %q lacks %q", code, out, want)
		}
	}

	for _, tc := range []struct {
		device string
		want   codes.Code
	}{
		{"example.com/test=missing", codes.NotFound},
		{"not-qualified", codes.InvalidArgument},
	} {
		c := container("bad", busyboxImage, "true")
		c.CDIDevices = []*runtimeapi.CDIDevice{{Name: tc.device}}
		_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: pod})
		if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.device) {
			t.Errorf("CDI device %s: %v, want %v naming it", tc.device, err, tc.want)
		}
	}
	ctrs, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil || len(ctrs.GetContainers()) != 1 {
		t.Errorf("containers after the refused ones: %v %v, want only %s", ctrs.GetContainers(), err, id)
	}

	// A DRA driver writes its spec while the node runs.
	if err := os.WriteFile(filepath.Join(specDir, "example-late.json"),
		[]byte(strings.Replace(cdiSpec("late", data), "example.com/test", "example.com/late", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	late := container("late", busyboxImage, "sleep", "3600")
	late.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/late=late"}}
	lateID := r.startContainer(t, podID, pod, late)
	if out, _ := r.execSync(t, lateID, "ls", "/dev/cdi-late"); strings.TrimSpace(out) != "/dev/cdi-late" {
		t.Errorf("the device of a spec written at run time: %q", out)
	}

	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}
