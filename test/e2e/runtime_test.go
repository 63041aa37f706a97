package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func container(name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// Two containers of one pod share the pod's IP and reach each other over
// localhost; the IP is the one the sandbox reports.
func TestPodContainersShareNetwork(t *testing.T) {
	r := sharedRuntime(t)
	pod := r.podConfig("share")
	podID := r.runPod(t, pod)
	st, err := r.rt.PodSandboxStatus(r.ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	if !strings.HasPrefix(ip, "10.88.") || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("sandbox status: ip %q state %v", ip, st.GetStatus().GetState())
	}
	web := r.startContainer(t, podID, pod, container("web", nginxImage))
	client := r.startContainer(t, podID, pod, container("client", busyboxImage, "sleep", "3600"))
	for _, id := range []string{web, client} {
		out, code := r.execSync(t, id, "ip", "-o", "-4", "addr", "show", "eth0")
		if code != 0 || !strings.Contains(out, " "+ip+"/") {
			t.Errorf("container %s sees %q (exit %d), want the pod IP %s", id[:12], out, code, ip)
		}
	}
	var out string
	var code int32
	waitFor(10*time.Second, func() bool {
		out, code = r.execSync(t, client, "wget", "-qO-", "http://127.0.0.1:80/")
		return code == 0
	})
	if code != 0 {
		t.Errorf("client -> web over localhost: exit %d: %s", code, out)
	}
	// And from the node to the pod IP.
	if got, err := r.inNode("wget", "-qO-", "-T", "5", "http://"+ip+":80/"); err != nil {
		t.Errorf("node -> pod IP: %v: %s", err, got)
	}
	hostname, _ := r.execSync(t, client, "hostname")
	if strings.TrimSpace(hostname) != "share" {
		t.Errorf("hostname = %q, want the pod's", hostname)
	}
}

// A memory limit lands in the container's cgroup; logs are CRI lines.
func TestResourcesAndLogs(t *testing.T) {
	r := sharedRuntime(t)
	pod := r.podConfig("res")
	podID := r.runPod(t, pod)
	long := strings.Repeat("x", 20000)
	cfg := container("logger", busyboxImage, "sh", "-c", "echo out; echo err >&2; echo "+long+"; sleep 3600")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}
	id := r.startContainer(t, podID, pod, cfg)

	limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", r.cgroupParent, id, "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(limit)) != fmt.Sprint(64<<20) {
		t.Errorf("memory.limit_in_bytes = %s, want %d", limit, 64<<20)
	}
	shares, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpu", r.cgroupParent, id, "cpu.shares"))
	if strings.TrimSpace(string(shares)) != "512" {
		t.Errorf("cpu.shares = %s, want 512", shares)
	}

	logPath := filepath.Join(pod.GetLogDirectory(), "logger.log")
	var lines []string
	waitFor(10*time.Second, func() bool {
		data, _ := os.ReadFile(logPath)
		lines = strings.Split(strings.TrimSpace(string(data)), "\n")
		return len(lines) >= 4
	})
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) ([PF]) (.*)$`)
	var got []string
	var rebuilt string
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("log line %q is not in the CRI format", l[:min(len(l), 80)])
		}
		if strings.HasPrefix(m[4], "xxx") {
			rebuilt += m[4]
			got = append(got, m[2]+" "+m[3]+" "+fmt.Sprint(len(m[4])))
			continue
		}
		got = append(got, m[2]+" "+m[3]+" "+m[4])
	}
	// stdout and stderr interleave in any order; the long line is split at
	// 16 KiB into a partial entry and its final part.
	want := map[string]bool{"stdout F out": true, "stderr F err": true, "stdout P 16384": true, "stdout F 3616": true}
	for _, g := range got {
		delete(want, g)
	}
	if len(want) != 0 || rebuilt != long {
		t.Errorf("log entries %v: missing %v (long line reassembled: %v)", got, want, rebuilt == long)
	}

	stats, err := r.rt.ContainerStats(r.ctx(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil || stats.GetStats().GetMemory().GetWorkingSetBytes().GetValue() == 0 || stats.GetStats().GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("ContainerStats = %v, %v: want memory and CPU usage", stats, err)
	}
	// kubelet finds the writable layer's filesystem by the image fs's ID.
	fsInfo, err := r.img.ImageFsInfo(r.ctx(t), &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fsInfo.GetImageFilesystems()) != 1 ||
		fsInfo.GetImageFilesystems()[0].GetFsId().GetMountpoint() != stats.GetStats().GetWritableLayer().GetFsId().GetMountpoint() {
		t.Errorf("image fs %v and writable layer %v differ (%v)", fsInfo.GetImageFilesystems(), stats.GetStats().GetWritableLayer(), err)
	}
}

// Stop and Remove are idempotent and accept unknown IDs (api.proto); the
// exit code and reason are reported.
func TestStopRemoveIdempotent(t *testing.T) {
	r := sharedRuntime(t)
	pod := r.podConfig("idem")
	podID := r.runPod(t, pod)
	id := r.startContainer(t, podID, pod, container("idem", busyboxImage, "sh", "-c", "trap 'exit 3' TERM; touch /tmp/ready; sleep 3600 & wait"))
	ctx := r.ctx(t)
	// The stop signal must find the trap in place.
	waitFor(10*time.Second, func() bool { _, code := r.execSync(t, id, "test", "-f", "/tmp/ready"); return code == 0 })
	for i := range 2 {
		if _, err := r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
			t.Fatalf("StopContainer #%d: %v", i+1, err)
		}
	}
	st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if s := st.GetStatus(); s.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || s.GetExitCode() != 3 || s.GetReason() != "Error" || s.GetFinishedAt() < s.GetStartedAt() {
		t.Errorf("after stop: state %v exit %d reason %q started %d finished %d", s.GetState(), s.GetExitCode(), s.GetReason(), s.GetStartedAt(), s.GetFinishedAt())
	}
	for i := range 2 {
		if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("RemovePodSandbox #%d: %v", i+1, err)
		}
	}
	for _, obj := range []string{id, podID} {
		if l := r.leaks(obj); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}
	unknown := strings.Repeat("0", 64)
	if _, err := r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("StopContainer of an unknown ID: %v", err)
	}
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: unknown}); err != nil {
		t.Errorf("StopPodSandbox of an unknown ID: %v", err)
	}
}

// TestOOMKilled: a container past its memory limit is killed by the
// kernel and reported as kubelet expects: reason OOMKilled, exit code 137.
func TestOOMKilled(t *testing.T) {
	r := sharedRuntime(t)
	pod := r.podConfig("oom")
	podID := r.runPod(t, pod)
	// tail keeps the last "line" of /dev/zero, which never ends.
	cfg := container("hog", busyboxImage, "tail", "/dev/zero")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}
	id := r.startContainer(t, podID, pod, cfg)
	ctx := r.ctx(t)
	var st *runtimeapi.ContainerStatus
	waitFor(60*time.Second, func() bool {
		resp, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		st = resp.GetStatus()
		return err == nil && st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetReason() != "OOMKilled" || st.GetExitCode() != 137 {
		t.Errorf("memory hog: state %v reason %q exit %d, want EXITED, OOMKilled, 137", st.GetState(), st.GetReason(), st.GetExitCode())
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if l := r.leaks(id); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// TestExecSyncOutputCap: a timed-out command is killed; output past
// kubelet's 16 MiB receive limit is cut so the response fits, and the exit
// code is kept.
func TestExecSyncOutputCap(t *testing.T) {
	r := sharedRuntime(t)
	pod := r.podConfig("execcap")
	podID := r.runPod(t, pod)
	id := r.startContainer(t, podID, pod, container("eb", busyboxImage, "sleep", "3600"))
	ctx := r.ctx(t)
	// A timed-out command is killed, not left running (critest "execSync
	// with timeout").
	if _, err := r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "4321"}, Timeout: 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync past its timeout: %v, want DeadlineExceeded", err)
	}
	if out, _ := r.execSync(t, id, "pgrep", "-f", "sleep 4321"); strings.TrimSpace(out) != "" {
		t.Errorf("the timed-out command still runs: pid %s", out)
	}
	// 20 MiB of output, exit code 7.
	resp, err := r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "dd if=/dev/zero bs=1M count=20 2>/dev/null; exit 7"}, Timeout: 60})
	if err != nil {
		t.Fatalf("ExecSync with 20 MiB of output: %v", err)
	}
	if n := len(resp.GetStdout()) + len(resp.GetStderr()); n >= 16<<20 || n < 15<<20 || resp.GetExitCode() != 7 {
		t.Errorf("ExecSync with 20 MiB of output: %d bytes, exit %d (want just under 16 MiB, 7)", n, resp.GetExitCode())
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
}

// TestExecSyncBackgroundChild: a command that leaves a child behind holding
// its output answers when the command exits, with its output and exit code
// (it waited for the child before: here until the timeout, DeadlineExceeded;
// with no timeout, forever). Exec with stdin and a failing exec keep working.
func TestExecSyncBackgroundChild(t *testing.T) {
	r := sharedRuntime(t)
	pod := r.podConfig("execbg")
	podID := r.runPod(t, pod)
	id := r.startContainer(t, podID, pod, container("bg", busyboxImage, "sleep", "3600"))
	ctx := r.ctx(t)
	resp, err := r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id,
		Cmd: []string{"sh", "-c", "sleep 4322 & echo started; echo oops >&2; exit 3"}, Timeout: 20})
	if err != nil {
		t.Fatalf("ExecSync leaving a child behind: %v", err)
	}
	if resp.GetExitCode() != 3 || string(resp.GetStdout()) != "started\n" || string(resp.GetStderr()) != "oops\n" {
		t.Errorf("ExecSync leaving a child behind: exit %d stdout %q stderr %q, want 3 \"started\\n\" \"oops\\n\"",
			resp.GetExitCode(), resp.GetStdout(), resp.GetStderr())
	}
	if out, _ := r.execSync(t, id, "pgrep", "-f", "sleep 4322"); strings.TrimSpace(out) == "" {
		t.Errorf("the background child is gone; it should run on in the container")
	}
	// A command that does not exist: the runtime's failure is a non-zero
	// exit code with its message, as with containerd.
	resp, err = r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/no/such/binary"}, Timeout: 20})
	if err != nil || resp.GetExitCode() == 0 {
		t.Errorf("ExecSync of a missing binary: exit %d err %v, want a non-zero exit code", resp.GetExitCode(), err)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
}

// TestCreateContainerRacesStopPod: containers created while their pod is
// being stopped are either refused (FailedPrecondition) or stopped with
// the pod; none is left running or created in a pod that is not ready.
func TestCreateContainerRacesStopPod(t *testing.T) {
	r := sharedRuntime(t)
	r.pull(t, busyboxImage)
	ctx := r.ctx(t)
	for round := range 4 {
		pod := r.podConfig(fmt.Sprintf("race%d", round))
		podID := r.runPod(t, pod)
		var wg sync.WaitGroup
		stopAfter := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				if i == 3 {
					close(stopAfter)
				}
				c := container(fmt.Sprintf("c%d", i), busyboxImage, "sleep", "3600")
				resp, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: pod})
				if err != nil {
					if status.Code(err) != codes.FailedPrecondition {
						t.Errorf("CreateContainer in a stopping pod: %v, want FailedPrecondition", err)
					}
					continue
				}
				// Start may lose the race too; only what is left matters.
				r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.GetContainerId()})
			}
		}()
		<-stopAfter
		if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		wg.Wait()
		list, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list.GetContainers() {
			if st := c.GetState(); st == runtimeapi.ContainerState_CONTAINER_RUNNING || st == runtimeapi.ContainerState_CONTAINER_CREATED {
				t.Errorf("round %d: container %s (%s) is %v in a stopped pod", round, c.GetId(), c.GetMetadata().GetName(), st)
			}
		}
		if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		if l := r.leaks(podID); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}
}

// Bad input gets the documented codes (DESIGN.md, errors users rely on).
func TestErrorCodes(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)
	unknown := strings.Repeat("f", 64)
	pod := r.podConfig("codes")
	podID := r.runPod(t, pod)
	r.pull(t, busyboxImage)
	noCmd := r.importImage(t, "example.com/e2e/nocmd:v1") // no Entrypoint, no Cmd
	code := func(err error) codes.Code { return status.Code(err) }
	tests := []struct {
		desc string
		call func() error
		want codes.Code
	}{
		{"RunPodSandbox without config", func() error {
			_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{})
			return err
		}, codes.InvalidArgument},
		{"RunPodSandbox without uid", func() error {
			c := r.podConfig("x")
			c.Metadata.Uid = ""
			_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: c})
			return err
		}, codes.InvalidArgument},
		{"RunPodSandbox with an unknown handler", func() error {
			_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: r.podConfig("x"), RuntimeHandler: "kata"})
			return err
		}, codes.InvalidArgument},
		{"RunPodSandbox with a DNS server that would add a resolv.conf line", func() error {
			c := r.podConfig("x")
			c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10\nnameserver 6.6.6.6"}}
			_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: c})
			return err
		}, codes.InvalidArgument},
		{"RunPodSandbox with a log directory climbing out", func() error {
			c := r.podConfig("x")
			c.LogDirectory = r.dir + "/logs/../../elsewhere" // not filepath.Join: it would clean the ".." away
			_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: c})
			return err
		}, codes.InvalidArgument},
		{"CreateContainer with a log path out of the pod's log directory", func() error {
			c := container("c", busyboxImage, "true")
			c.LogPath = "../../escape.log"
			_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c})
			return err
		}, codes.InvalidArgument},
		{"PodSandboxStatus of an unknown ID", func() error {
			_, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: unknown})
			return err
		}, codes.NotFound},
		{"CreateContainer in an unknown sandbox", func() error {
			_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: unknown, Config: container("c", busyboxImage, "true")})
			return err
		}, codes.NotFound},
		{"CreateContainer without metadata", func() error {
			_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: busyboxImage}}})
			return err
		}, codes.InvalidArgument},
		{"CreateContainer of an absent image", func() error {
			_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: container("c", "registry.k8s.io/none:1", "true")})
			return err
		}, codes.NotFound},
		{"CreateContainer without a command in an image without one", func() error {
			_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "nocmd"}, Image: &runtimeapi.ImageSpec{Image: noCmd}}})
			return err
		}, codes.InvalidArgument},
		{"StartContainer of an unknown ID", func() error {
			_, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: unknown})
			return err
		}, codes.NotFound},
		{"ExecSync in an unknown container", func() error {
			_, err := r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: unknown, Cmd: []string{"true"}})
			return err
		}, codes.NotFound},
		{"PullImage of an unparsable reference", func() error {
			_, err := r.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "Not A Ref!"}})
			return err
		}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		if got := code(tt.call()); got != tt.want {
			t.Errorf("%s: code %v, want %v", tt.desc, got, tt.want)
		}
	}

	// A duplicate container name is AlreadyExists; a container in a
	// stopped sandbox is FailedPrecondition; an image in use cannot go.
	cfg := container("dup", busyboxImage, "sleep", "3600")
	if _, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg}); code(err) != codes.AlreadyExists {
		t.Errorf("duplicate container name: %v, want AlreadyExists", err)
	}
	if _, err := r.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}}); code(err) != codes.FailedPrecondition {
		t.Errorf("RemoveImage of an image in use: %v, want FailedPrecondition", err)
	}
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: container("late", busyboxImage, "true")}); code(err) != codes.FailedPrecondition {
		t.Errorf("container in a stopped sandbox: %v, want FailedPrecondition", err)
	}
}

// A RunPodSandbox whose CNI ADD fails, and a CreateContainer whose runc
// create fails, leave nothing behind: no netns, mount, runc state, cgroup,
// address or record. (A failure after the ADD succeeded, which must give
// the address back, is TestUndoAtEveryStep's "cni-added".)
func TestFailuresLeaveNothing(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)

	// cni-bridge refuses the hostIP while parsing its runtime config, before
	// it allocates anything; the sandbox must still be undone completely.
	bad := r.podConfig("badnet")
	bad.PortMappings = []*runtimeapi.PortMapping{{HostPort: 8080, ContainerPort: 80, HostIp: "not-an-ip"}}
	_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: bad})
	if err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("RunPodSandbox with an invalid hostIP: %v, want cni-bridge's error naming it", err)
	}
	list, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.GetItems() {
		if p.GetMetadata().GetUid() == bad.GetMetadata().GetUid() {
			t.Errorf("the failed sandbox is listed: %s", p.GetId())
		}
	}
	for _, d := range []string{"netns", "runc", "bundles", "shm"} {
		entries, _ := os.ReadDir(filepath.Join(r.dir, "state", d))
		for _, e := range entries {
			if !r.isLive(t, e.Name()) {
				t.Errorf("state/%s/%s left by the failed sandbox", d, e.Name())
			}
		}
	}

	pod := r.podConfig("badctr")
	podID := r.runPod(t, pod)
	r.pull(t, busyboxImage)
	cfg := container("badmount", busyboxImage, "true")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/proc/forbidden", HostPath: t.TempDir()}}
	if _, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg}); err == nil {
		t.Fatal("CreateContainer with a mount into /proc succeeded")
	}
	ctrs, _ := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if len(ctrs.GetContainers()) != 0 {
		t.Errorf("the failed container is listed: %v", ctrs.GetContainers())
	}
	entries, _ := os.ReadDir(filepath.Join(r.dir, "root", "images", "rootfs"))
	for _, e := range entries {
		if !r.isLive(t, e.Name()) {
			t.Errorf("rootfs %s left by the failed container", e.Name())
		}
	}
	// The name is free again.
	cfg.Mounts = nil
	if _, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg}); err != nil {
		t.Errorf("CreateContainer after the failure: %v", err)
	}
}

// isLive reports whether id is a sandbox or container the runtime lists.
func (r *testRuntime) isLive(t *testing.T, id string) bool {
	ctx := r.ctx(t)
	pods, _ := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	for _, p := range pods.GetItems() {
		if p.GetId() == id {
			return true
		}
	}
	ctrs, _ := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	for _, c := range ctrs.GetContainers() {
		if c.GetId() == id {
			return true
		}
	}
	return false
}
