package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRuntimeHandlers: a RuntimeClass handler from the config's
// [runtimes.NAME] table runs its pods under that runtime with its own state
// directory (runc with another root here: crun cannot run on this cgroup
// v1 hybrid host, the VM runs critest with crun): the pause and the
// container are in the handler's state, the default runtime knows nothing
// of them; exec, a restart of cri-shim, stop and removal go through it.
// Status lists every handler; an unknown one is InvalidArgument.
func TestRuntimeHandlers(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	r := ownRuntime(t, "handlers")
	conf := filepath.Join(r.dir, "handlers.toml")
	if err := os.WriteFile(conf, []byte("[runtimes.fast]\nbinary = \""+runc+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.args = []string{"--config", conf}
	r.kill9()
	r.restart(t)
	ctx := r.ctx(t)

	st, err := r.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range st.GetRuntimeHandlers() {
		names = append(names, h.GetName())
	}
	want := []string{"", "fast", "runc"}
	if crun, err := exec.LookPath("crun"); err == nil && exec.Command(crun, "features").Run() == nil {
		want = []string{"", "crun", "fast", "runc"} // added by itself: installed and probed
	}
	if !slices.Equal(names, want) {
		t.Errorf("Status lists handlers %q, want %q", names, want)
	}

	pod := r.podConfig("fast")
	if _, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: "kata"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "kata") {
		t.Errorf("unknown handler: %v, want InvalidArgument naming it", err)
	}
	resp, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: "fast"})
	if err != nil {
		t.Fatalf("RunPodSandbox with handler fast: %v", err)
	}
	podID := resp.GetPodSandboxId()
	id := r.startContainer(t, podID, pod, container("app", busyboxImage, "sleep", "3600"))
	if out, code := r.execSync(t, id, "echo", "through fast"); code != 0 || out != "through fast\n" {
		t.Errorf("exec: %q, exit %d", out, code)
	}
	fastRoot := filepath.Join(r.dir, "state", "runtimes", "fast")
	for _, obj := range []string{podID, id} {
		if _, err := os.Stat(filepath.Join(fastRoot, obj)); err != nil {
			t.Errorf("%s is not in the handler's state (%s): %v", obj, fastRoot, err)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "state", "runc", obj, "state.json")); err == nil {
			t.Errorf("%s is in the default runtime's state too", obj)
		}
	}
	if out, err := exec.Command(runc, "--root", fastRoot, "state", id).CombinedOutput(); err != nil || !strings.Contains(string(out), `"running"`) {
		t.Errorf("runc --root %s state %s: %v: %s", fastRoot, id, err, out)
	}
	ps, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.GetStatus().GetRuntimeHandler() != "fast" {
		t.Errorf("PodSandboxStatus runtime handler %q (%v), want fast", ps.GetStatus().GetRuntimeHandler(), err)
	}

	// A restart finds the pod and container in the handler's state.
	r.kill9()
	r.restart(t)
	ctx = r.ctx(t)
	cs, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil || cs.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after a restart the container is %v (%v), want running", cs.GetStatus().GetState(), err)
	}
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(fastRoot); len(entries) != 0 {
		t.Errorf("the handler's state keeps %v after the pod is removed", entries)
	}
	if leaks := r.leaks(podID); len(leaks) > 0 {
		t.Errorf("left behind: %v", leaks)
	}
}
