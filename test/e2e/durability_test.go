package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ownRuntime is a runtime for one test that kills and restarts it.
func ownRuntime(t *testing.T, name string) *testRuntime {
	t.Helper()
	requireRoot(t)
	r, err := startRuntime(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// counter prints numbered lines every 50 ms; its log proves nothing is
// lost or duplicated across an outage.
func counter(name string) *runtimeapi.ContainerConfig {
	c := container(name, busyboxImage, "sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); usleep 50000; done")
	c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}
	return c
}

// TestKillNineKeepsContainers: kill -9 of cri-shim with 5 running pods stops
// nothing; lines written during the outage are logged when written; a
// container that exits meanwhile is reported with its real exit code and
// finish time after the restart.
func TestKillNineKeepsContainers(t *testing.T) {
	r := ownRuntime(t, "kill9")
	type podCtr struct {
		cfg          *runtimeapi.PodSandboxConfig
		podID, ctrID string
	}
	var pods []podCtr
	for i := range 5 {
		cfg := r.podConfig(fmt.Sprintf("kill%d", i))
		podID := r.runPod(t, cfg)
		pods = append(pods, podCtr{cfg, podID, r.startContainer(t, podID, cfg, counter("counter"))})
	}
	exiter := container("exiter", busyboxImage, "sh", "-c", "sleep 2; exit 7")
	exiterID := r.startContainer(t, pods[0].podID, pods[0].cfg, exiter)

	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	r.kill9()
	time.Sleep(3 * time.Second) // the exiter exits, counters keep writing
	restarted := time.Now()
	r.restart(t)
	time.Sleep(300 * time.Millisecond)

	ctx := r.ctx(t)
	for _, p := range pods {
		st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: p.ctrID})
		if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s after restart: %v %v", p.ctrID[:12], st.GetStatus().GetState(), err)
		}
		ps, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.podID})
		if err != nil || ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod %s after restart: %v %v", p.podID[:12], ps.GetStatus().GetState(), err)
		}
		// Every line once, in order, and lines stamped during the outage.
		data, _ := os.ReadFile(filepath.Join(p.cfg.GetLogDirectory(), "counter.log"))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		during := 0
		for i, l := range lines {
			f := strings.SplitN(l, " ", 4)
			if len(f) != 4 || f[3] != "line-"+strconv.Itoa(i) {
				t.Fatalf("log of %s: line %d is %q", p.ctrID[:12], i, l)
			}
			ts, _ := time.Parse(time.RFC3339Nano, f[0])
			if ts.After(killed) && ts.Before(restarted) {
				during++
			}
		}
		if during < 20 {
			t.Errorf("log of %s has %d lines stamped during the 3 s outage", p.ctrID[:12], during)
		}
	}
	st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: exiterID})
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Unix(0, st.GetStatus().GetFinishedAt())
	if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetStatus().GetExitCode() != 7 ||
		finished.Before(killed) || finished.After(restarted) {
		t.Errorf("exiter after restart: state %v exit %d finished %v (outage %v..%v)", st.GetStatus().GetState(),
			st.GetStatus().GetExitCode(), finished, killed, restarted)
	}
	// New work after the restart, then no leaks.
	cfg := r.podConfig("after")
	podID := r.runPod(t, cfg)
	r.startContainer(t, podID, cfg, container("after", busyboxImage, "sleep", "60"))
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}

// failpoints are the steps at which TestFailpoints kills cri-shim (pkg/pod's
// Fault steps, through CRI_SHIM_FAILPOINT).
var failpoints = []string{
	"sandbox-recorded", "netns-created", "cni-added", "pause-bundle", "pause-started", "sandbox-ready",
	"container-recorded", "rootfs-prepared", "container-created", "container-started",
	"stop-containers-stopped", "stop-network-down", "container-removed-from-runtime", "remove-containers-removed",
}

// TestFailpoints kills cri-shim with SIGKILL at each step of RunPodSandbox,
// CreateContainer, StartContainer, StopPodSandbox and RemovePodSandbox;
// after the restart the kubelet-style retry of the whole lifecycle
// succeeds and the leak checker finds nothing.
func TestFailpoints(t *testing.T) {
	r := ownRuntime(t, "failpoints")
	r.pull(t, busyboxImage)
	for _, fp := range failpoints {
		t.Run(fp, func(t *testing.T) {
			r.env = []string{"CRI_SHIM_FAILPOINT=" + fp}
			r.kill9()
			r.restart(t)
			cfg := r.podConfig("fp")
			ctr := container("c", busyboxImage, "sleep", "3600")
			crashed := lifecycle(t, r, cfg, ctr)
			if !crashed {
				t.Fatalf("the failpoint %s was never reached", fp)
			}
			r.env = nil
			r.restart(t)
			// kubelet retries: the same sandbox config, then the rest.
			if lifecycle(t, r, cfg, ctr) {
				t.Fatal("cri-shim died on the retry")
			}
			if leaks := r.leakcheck(t); len(leaks) > 0 {
				t.Errorf("after a crash at %s: leaks %v", fp, leaks)
			}
		})
	}
}

// undoSteps are the Fault steps of RunPodSandbox and CreateContainer before
// either commits: an error at any of them must undo all that was made.
var undoSteps = []string{
	"sandbox-recorded", "netns-created", "cni-added", "pause-bundle", "pause-started",
	"container-recorded", "rootfs-prepared", "container-created",
}

// TestUndoAtEveryStep fails RunPodSandbox or CreateContainer with an error
// (CRI_SHIM_FAILPOINT=error:STEP, the daemon keeps running) at each step
// before it commits. The call fails with that error; the failed object is not
// listed; its undo leaves no record, netns, mount, runc state, cgroup or IP
// address (leakcheck, while the daemon that undid it is still up); and the
// same request succeeds once the fault is gone.
func TestUndoAtEveryStep(t *testing.T) {
	r := ownRuntime(t, "undo")
	r.pull(t, busyboxImage)
	for _, step := range undoSteps {
		t.Run(step, func(t *testing.T) {
			r.env = []string{"CRI_SHIM_FAILPOINT=error:" + step}
			r.kill9()
			r.restart(t)
			ctx := r.ctx(t)
			cfg := r.podConfig("undo")
			ctr := container("c", busyboxImage, "sleep", "3600")
			inContainer := strings.HasPrefix(step, "container-") || step == "rootfs-prepared"

			podID := ""
			run, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if inContainer {
				if err != nil {
					t.Fatalf("RunPodSandbox: %v", err)
				}
				podID = run.GetPodSandboxId()
				_, err = r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ctr, SandboxConfig: cfg})
			}
			if err == nil || !strings.Contains(err.Error(), "failpoint "+step) {
				t.Fatalf("the call failing at %s: got %v, want the failpoint's error", step, err)
			}
			if inContainer {
				ctrs, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
				if err != nil || len(ctrs.GetContainers()) != 0 {
					t.Errorf("after the failed CreateContainer: containers %v (%v), want none", ctrs.GetContainers(), err)
				}
			} else {
				pods, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pods.GetItems() {
					if p.GetMetadata().GetUid() == cfg.GetMetadata().GetUid() {
						t.Errorf("the failed sandbox is listed: %s %v", p.GetId(), p.GetState())
					}
				}
			}
			if leaks := r.leakcheck(t); len(leaks) > 0 {
				t.Errorf("after an error at %s: leaks %v", step, leaks)
			}

			// Without the fault, the same requests succeed (names released).
			r.env = nil
			r.kill9()
			r.restart(t)
			if podID == "" {
				podID = r.runPod(t, cfg)
			}
			r.startContainer(t, podID, cfg, ctr)
			ctx = r.ctx(t)
			if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
			if leaks := r.leakcheck(t); len(leaks) > 0 {
				t.Errorf("after the retry: leaks %v", leaks)
			}
		})
	}
}

// lifecycle runs a pod through RunPodSandbox, CreateContainer,
// StartContainer, StopPodSandbox and RemovePodSandbox, tolerating what a
// crash in an earlier attempt left (as kubelet does). It returns true if
// the daemon went away during it.
func lifecycle(t *testing.T, r *testRuntime, cfg *runtimeapi.PodSandboxConfig, ctr *runtimeapi.ContainerConfig) bool {
	t.Helper()
	ctx := r.ctx(t)
	gone := func(err error) bool { return status.Code(err) == codes.Unavailable }
	check := func(what string, err error) bool {
		if gone(err) {
			return true
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return false
	}
	// A previous attempt may have made the sandbox (ready or not): kubelet
	// would see it listed and remove what is not ready.
	pods, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if check("ListPodSandbox", err) {
		return true
	}
	for _, p := range pods.GetItems() {
		if p.GetMetadata().GetUid() == cfg.GetMetadata().GetUid() && p.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); check("RemovePodSandbox (stale)", err) {
				return true
			}
		}
	}
	run, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if check("RunPodSandbox", err) {
		return true
	}
	podID := run.GetPodSandboxId()
	// Containers left by an earlier attempt are removed, as kubelet does
	// with containers it does not want.
	ctrs, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if check("ListContainers", err) {
		return true
	}
	for _, c := range ctrs.GetContainers() {
		if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.GetId()}); check("RemoveContainer (stale)", err) {
			return true
		}
	}
	created, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ctr, SandboxConfig: cfg})
	if check("CreateContainer", err) {
		return true
	}
	if _, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.GetContainerId()}); check("StartContainer", err) {
		return true
	}
	if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: created.GetContainerId()}); check("RemoveContainer", err) {
		return true
	}
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); check("StopPodSandbox", err) {
		return true
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); check("RemovePodSandbox", err) {
		return true
	}
	return false
}

// TestRebootSimulation: every process killed and --state wiped, --root
// kept (a reboot; the boot ID stays, as it does in a test). Start-up alone
// reports old pods NotReady and containers Exited, releases every pod IP
// and removes the old cgroups.
func TestRebootSimulation(t *testing.T) {
	r := ownRuntime(t, "reboot")
	var ctrIDs, podIDs []string
	for i := range 3 {
		cfg := r.podConfig(fmt.Sprintf("reboot%d", i))
		podID := r.runPod(t, cfg)
		podIDs = append(podIDs, podID)
		ctrIDs = append(ctrIDs, r.startContainer(t, podID, cfg, container("c", busyboxImage, "sleep", "3600")))
	}
	ips, _ := filepath.Glob(filepath.Join(r.dir, "cni-bridge", "pods", "ipam", "ips", "*"))
	if len(ips) != 3 {
		t.Fatalf("%d reservations before the reboot, want 3", len(ips))
	}
	r.powerOff(t)

	r.restart(t)
	ctx := r.ctx(t)
	for _, id := range podIDs {
		st, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if err != nil || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod %s after reboot: %v %v", id[:12], st.GetStatus().GetState(), err)
		}
	}
	for _, id := range ctrIDs {
		st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %s after reboot: %v %v", id[:12], st.GetStatus().GetState(), err)
		}
		if dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", r.cgroupParent, id)); len(dirs) > 0 {
			t.Errorf("cgroups of %s survive the reboot: %v", id[:12], dirs)
		}
	}
	if ips, _ := filepath.Glob(filepath.Join(r.dir, "cni-bridge", "pods", "ipam", "ips", "*")); len(ips) != 0 {
		t.Errorf("reservations after reboot: %v", ips)
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks after reboot: %v", leaks)
	}
	// kubelet then removes them, and new pods work.
	for _, id := range podIDs {
		if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("RemovePodSandbox after reboot: %v", err)
		}
	}
	cfg := r.podConfig("after-reboot")
	podID := r.runPod(t, cfg)
	r.startContainer(t, podID, cfg, container("c", busyboxImage, "sleep", "60"))
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}

// powerOff kills every process of the runtime (daemon, monitor, pause and
// containers), which takes its private mount namespace and every mount in
// it, and wipes --state: what a reboot leaves.
func (r *testRuntime) powerOff(t *testing.T) {
	t.Helper()
	mon := r.monitorPid()
	mnt, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", mon))
	if err != nil {
		t.Fatal(err)
	}
	r.kill9()
	// Containers and pause live in mount namespaces of their own: find them
	// by their cgroups.
	procs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", r.cgroupParent, "*", "cgroup.procs"))
	for _, f := range procs {
		data, _ := os.ReadFile(f)
		for _, p := range strings.Fields(string(data)) {
			n, _ := strconv.Atoi(p)
			syscall.Kill(n, syscall.SIGKILL)
		}
	}
	for range 50 {
		pids := pidsInMountNS(mnt)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pids := pidsInMountNS(mnt); len(pids) > 0 {
		t.Fatalf("processes survive the power-off: %v", pids)
	}
	if err := os.RemoveAll(filepath.Join(r.dir, "state")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(r.dir, "state"), 0o755)
}

func pidsInMountNS(ns string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, p := range procs {
		if l, err := os.Readlink(p + "/ns/mnt"); err == nil && l == ns {
			if st, err := os.ReadFile(p + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
				continue // zombies are already dead
			}
			n, _ := strconv.Atoi(filepath.Base(p))
			out = append(out, n)
		}
	}
	return out
}

// TestCorruptRecord: a record that cannot be read does not stop the
// daemon: the sandbox is reported NotReady, the container Unknown, and
// both can be removed without leaking.
func TestCorruptRecord(t *testing.T) {
	r := ownRuntime(t, "corrupt")
	cfg := r.podConfig("corrupt")
	podID := r.runPod(t, cfg)
	ctrID := r.startContainer(t, podID, cfg, container("c", busyboxImage, "sleep", "3600"))
	good := r.podConfig("good")
	goodID := r.runPod(t, good)
	r.kill9()
	for _, f := range []string{
		filepath.Join(r.dir, "root", "sandboxes", podID, "sandbox.json"),
		filepath.Join(r.dir, "root", "containers", ctrID, "container.json"),
	} {
		if err := os.WriteFile(f, []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.restart(t)
	ctx := r.ctx(t)
	ps, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("corrupt sandbox: %v %v", ps.GetStatus().GetState(), err)
	}
	cs, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil || cs.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_UNKNOWN {
		t.Errorf("corrupt container: %v %v", cs.GetStatus().GetState(), err)
	}
	gs, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: goodID})
	if err != nil || gs.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("the good sandbox: %v %v", gs.GetStatus().GetState(), err)
	}
	if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Errorf("RemoveContainer of the unknown container: %v", err)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Errorf("RemovePodSandbox of the unknown sandbox: %v", err)
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}

// TestRecoveryDoesNotBlockServing: start-up recovery must not keep the
// socket closed. A corrupt sandbox record makes recovery release that
// pod's network (CNI DEL); the CNI plugin now hangs. cri-shim still serves
// at once, the other pod is Ready, and once the plugin is fixed the corrupt
// pod is removed without leaks (DESIGN.md "everything else is served").
func TestRecoveryDoesNotBlockServing(t *testing.T) {
	r := ownRuntime(t, "hang")
	cfg := r.podConfig("stuck")
	podID := r.runPod(t, cfg)
	goodID := r.runPod(t, r.podConfig("good"))
	r.kill9()
	if err := os.WriteFile(filepath.Join(r.dir, "root", "sandboxes", podID, "sandbox.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A plugin that answers nothing for 25 s, in place of cni-bridge.
	const hangSeconds = 25
	confPath := filepath.Join(r.dir, "net.d", "10-pods.conflist")
	goodConf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(r.dir, "cni-bin"), 0o755)
	hang := fmt.Sprintf("#!/bin/sh\nsleep %d\necho '{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"test plugin hung\"}'\nexit 1\n", hangSeconds)
	if err := os.WriteFile(filepath.Join(r.dir, "cni-bin", "hang"), []byte(hang), 0o755); err != nil {
		t.Fatal(err)
	}
	// cri-shim reloads its CNI config when the directory changes: replace
	// the file by a rename, as a config manager does.
	writeConf := func(data []byte) {
		t.Helper()
		tmp := filepath.Join(r.dir, "conflist.tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, confPath); err != nil {
			t.Fatal(err)
		}
	}
	writeConf([]byte(strings.Replace(string(goodConf), `"type":"cni-bridge"`, `"type":"hang"`, 1)))

	start := time.Now()
	r.restart(t) // returns once Version answers
	serving := time.Since(start)
	t.Logf("start to serving with 1 corrupt record and a hanging CNI plugin: %v", serving.Round(time.Millisecond))
	if serving > hangSeconds*time.Second/2 {
		t.Errorf("cri-shim took %v to serve: recovery waited for the hanging plugin", serving)
	}
	ctx := r.ctx(t)
	gs, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: goodID})
	if err != nil || gs.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("the good sandbox: %v %v", gs.GetStatus().GetState(), err)
	}
	ps, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("corrupt sandbox: %v %v", ps.GetStatus().GetState(), err)
	}
	// The plugin is fixed; kubelet removes the pod (waiting for the
	// background DEL that holds the pod, then doing its own).
	writeConf(goodConf)
	for _, id := range []string{podID, goodID} {
		if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("RemovePodSandbox %s: %v", id, err)
		}
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}

// TestMonitorDeath: the node's monitor dies (kill -9). Containers do not
// die with it (their stdout is a FIFO they also hold open for reading, so
// no SIGPIPE), cri-shim starts a new monitor, and the logs resume with
// nothing lost or duplicated.
func TestMonitorDeath(t *testing.T) {
	r := ownRuntime(t, "monitor")
	cfg := r.podConfig("mon")
	podID := r.runPod(t, cfg)
	ctrID := r.startContainer(t, podID, cfg, counter("counter"))
	time.Sleep(500 * time.Millisecond)
	old := r.monitorPid()
	syscall.Kill(old, syscall.SIGKILL)
	// cri-shim notices the lost connection and starts a new monitor.
	if err := waitFor(15*time.Second, func() bool { p := r.monitorPid(); return p != old && p != 0 && syscall.Kill(p, 0) == nil }); err != nil {
		t.Fatalf("no new monitor: %v", err)
	}
	time.Sleep(2 * time.Second)
	st, err := r.rt.ContainerStatus(r.ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after the monitor died: %v %v", st.GetStatus().GetState(), err)
	}
	data, _ := os.ReadFile(filepath.Join(cfg.GetLogDirectory(), "counter.log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i, l := range lines {
		if f := strings.SplitN(l, " ", 4); len(f) != 4 || f[3] != "line-"+strconv.Itoa(i) {
			t.Fatalf("line %d of the log is %q", i, l)
		}
	}
	// Lines are still coming: the new monitor holds the FIFO.
	n := len(lines)
	time.Sleep(time.Second)
	data, _ = os.ReadFile(filepath.Join(cfg.GetLogDirectory(), "counter.log"))
	if m := len(strings.Split(strings.TrimSpace(string(data)), "\n")); m < n+10 {
		t.Errorf("log grew from %d to %d lines in 1 s after the monitor restart", n, m)
	}
	// The container can still be stopped; its exit is seen by the new
	// monitor (through a pidfd: the code is unknown, as documented).
	if _, err := r.rt.StopContainer(r.ctx(t), &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 1}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	st, _ = r.rt.ContainerStatus(r.ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("after stop: %v", st.GetStatus().GetState())
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}
