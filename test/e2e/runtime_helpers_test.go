package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// testRuntime is a cri-shim serving inside a throwaway node: a network
// namespace with the cni-bridge network (10.88.0.0/16), the test image
// registry on its loopback, and cri-shim in private mount/IPC/UTS
// namespaces, exactly as hack/run.sh and hack/critest.sh run it.
type testRuntime struct {
	dir, ns, sock string
	// env is added to cri-shim's environment (CRI_SHIM_FAILPOINT).
	env []string
	// args are added to cri-shim's command line (on its next start).
	args []string
	// cgroupParent is the cgroup parent of this runtime's pods, so its
	// cgroups are told apart from other runtimes' on the machine.
	cgroupParent string
	cmd, reg     *exec.Cmd
	exited       chan struct{} // closed when the current cri-shim process ends
	conn         *grpc.ClientConn
	rt           runtimeapi.RuntimeServiceClient
	img          runtimeapi.ImageServiceClient
}

var (
	sharedOnce sync.Once
	shared     *testRuntime
	sharedErr  error
)

// sharedRuntime is one runtime for every test that only adds and removes
// its own pods (started on first use, stopped by TestMain).
func sharedRuntime(t *testing.T) *testRuntime {
	t.Helper()
	requireRoot(t)
	sharedOnce.Do(func() { shared, sharedErr = startRuntime("shared") })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func stopSharedRuntime() error {
	if shared != nil {
		return shared.stop()
	}
	return nil
}

func startRuntime(name string) (_ *testRuntime, err error) {
	dir, err := os.MkdirTemp("", "e2e-"+name+"-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	r := &testRuntime{dir: dir, ns: filepath.Join(dir, "netns"), sock: filepath.Join(dir, "cri.sock"),
		cgroupParent: "/cri-shim-e2e-" + filepath.Base(dir)}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	if err := netns.New(r.ns); err != nil {
		return nil, err
	}
	for _, d := range []string{"net.d", "root", "state", "certs.d", "logs"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"cni0","subnet":"10.88.0.0/16",
"isDefaultGateway":true,"ipMasq":true,"mtu":1500,"hairpinMode":true,"dataDir":%q,"capabilities":{"portMappings":true}}]}`, filepath.Join(dir, "cni-bridge"))
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-pods.conflist"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws", "docker.io"} {
		os.MkdirAll(filepath.Join(dir, "certs.d", host), 0o755)
		toml := fmt.Sprintf("server = \"https://%s\"\n\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host)
		if err := os.WriteFile(filepath.Join(dir, "certs.d", host, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return nil, err
		}
	}
	ready := filepath.Join(dir, "registry.ready")
	r.reg = exec.Command("nsenter", "--net="+r.ns, filepath.Join(binDir, "testimages"), "serve", "--addr", "127.0.0.1:5000", "--ready-file", ready)
	regLog, _ := os.Create(filepath.Join(dir, "registry.log"))
	r.reg.Stdout, r.reg.Stderr = regLog, regLog
	if err := r.reg.Start(); err != nil {
		return nil, err
	}
	if err := waitFor(2*time.Minute, func() bool { _, err := os.Stat(ready); return err == nil }); err != nil {
		return nil, fmt.Errorf("test registry did not come up: %w", err)
	}
	if err := r.startCRIShim(); err != nil {
		return nil, err
	}
	return r, nil
}

// startCRIShim starts (or restarts) the daemon. A restart joins the mount
// namespace of the running monitor, as cri-shim requires.
func (r *testRuntime) startCRIShim() error {
	args := []string{"--net=" + r.ns}
	if data, err := os.ReadFile(filepath.Join(r.dir, "state", "monitor", "monitor.pid")); err == nil {
		if pid := strings.TrimSpace(string(data)); syscall.Kill(atoi(pid), 0) == nil {
			args = append(args, "--mount=/proc/"+pid+"/ns/mnt", "--ipc=/proc/"+pid+"/ns/ipc", "--uts=/proc/"+pid+"/ns/uts")
		}
	}
	if len(args) == 1 {
		args = append(args, "unshare", "--mount", "--ipc", "--uts", "--propagation", "private")
	}
	args = append(args, filepath.Join(binDir, "cri-shim"), "--listen", r.sock, "--root", filepath.Join(r.dir, "root"),
		"--state", filepath.Join(r.dir, "state"), "--cni-conf-dir", filepath.Join(r.dir, "net.d"),
		"--cni-bin-dir", binDir+":"+filepath.Join(r.dir, "cni-bin"), "--registry-config-dir", filepath.Join(r.dir, "certs.d"), "-v=2")
	args = append(args, r.args...)
	r.cmd = exec.Command("nsenter", args...)
	r.cmd.Env = append(os.Environ(), r.env...)
	logf, _ := os.OpenFile(filepath.Join(r.dir, "cri-shim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return err
	}
	cmd := r.cmd
	r.exited = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(r.exited)
	if r.conn == nil {
		conn, err := grpc.NewClient("unix://"+r.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
			// kubelet accepts responses up to 16 MiB.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
		if err != nil {
			return err
		}
		r.conn = conn
		r.rt = runtimeapi.NewRuntimeServiceClient(conn)
		r.img = runtimeapi.NewImageServiceClient(conn)
	}
	return waitFor(30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := r.rt.Version(ctx, &runtimeapi.VersionRequest{})
		return err == nil
	})
}

// killProcessesNaming SIGKILLs every process whose command line contains
// dir (the runtime's monitor is "cri-shim-monitor --dir <dir>/state/monitor")
// and returns them as "pid command line".
func killProcessesNaming(dir string) []string {
	var killed []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmdline), dir+"/") {
			continue
		}
		pid := atoi(filepath.Base(filepath.Dir(p)))
		if pid <= 1 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
		}
	}
	return killed
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// stop removes every pod, stops the daemon, the monitor and the registry,
// and removes the namespace and the directory. It fails when a process of
// this runtime was still running after the orderly shutdown (and kills it).
func (r *testRuntime) stop() error {
	if r.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range resp.GetItems() {
				r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
			}
		}
		cancel()
	}
	if r.conn != nil {
		r.conn.Close()
	}
	// The daemon first, and wait for it: a cri-shim that sees its monitor go
	// starts a new one.
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			r.cmd.Process.Kill()
			<-r.exited
		}
	}
	if data, err := os.ReadFile(filepath.Join(r.dir, "state", "monitor", "monitor.pid")); err == nil {
		pid := atoi(strings.TrimSpace(string(data)))
		if pid > 1 && syscall.Kill(pid, syscall.SIGTERM) == nil {
			waitFor(10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
		}
	}
	if r.reg != nil && r.reg.Process != nil {
		r.reg.Process.Kill()
		r.reg.Wait()
	}
	// Nothing else may still name this runtime's directory.
	var leftErr error
	if left := killProcessesNaming(r.dir); len(left) > 0 {
		leftErr = fmt.Errorf("still running after cri-shim and its monitor were stopped (killed now): %s", strings.Join(left, "; "))
		time.Sleep(200 * time.Millisecond)
	}
	netns.Remove(r.ns)
	os.RemoveAll(r.dir)
	// runc made the cgroup parents; remove them where they are empty (the
	// default one stays while another runtime on this machine uses it).
	for _, pattern := range []string{"/sys/fs/cgroup/*/cri-shim", "/sys/fs/cgroup/*" + r.cgroupParent} {
		parents, _ := filepath.Glob(pattern)
		for _, p := range parents {
			syscall.Rmdir(p)
		}
	}
	return leftErr
}

func (r *testRuntime) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var podCounter sync.Mutex
var podSeq int

// podConfig returns a unique pod config whose logs go under the runtime's
// directory.
func (r *testRuntime) podConfig(name string) *runtimeapi.PodSandboxConfig {
	podCounter.Lock()
	podSeq++
	n := podSeq
	podCounter.Unlock()
	uid := fmt.Sprintf("%s-%d", name, n)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(r.dir, "logs", uid),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: r.cgroupParent},
	}
}

// runPod starts a pod removed when the test ends.
func (r *testRuntime) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := r.rt.RunPodSandbox(r.ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	id := resp.GetPodSandboxId()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	})
	return id
}

const (
	busyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	nginxImage   = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
)

func (r *testRuntime) pull(t *testing.T, ref string) {
	t.Helper()
	if _, err := r.img.PullImage(r.ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
}

// startContainer creates and starts a container.
func (r *testRuntime) startContainer(t *testing.T, podID string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	r.pull(t, cfg.GetImage().GetImage())
	resp, err := r.rt.CreateContainer(r.ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	id := resp.GetContainerId()
	if _, err := r.rt.StartContainer(r.ctx(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	return id
}

// execSync runs a command and fails the test on a transport error.
func (r *testRuntime) execSync(t *testing.T, id string, cmd ...string) (string, int32) {
	t.Helper()
	resp, err := r.rt.ExecSync(r.ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	return string(resp.GetStdout()) + string(resp.GetStderr()), resp.GetExitCode()
}

// leaks lists what of one object ID is still on the node: netns pins,
// mounts, runc state, bundles and cgroups.
func (r *testRuntime) leaks(id string) []string {
	var out []string
	for _, p := range []string{
		filepath.Join(r.dir, "state", "netns", id),
		filepath.Join(r.dir, "state", "userns", id),
		filepath.Join(r.dir, "state", "runc", id),
		filepath.Join(r.dir, "state", "bundles", id),
		filepath.Join(r.dir, "state", "shm", id),
		filepath.Join(r.dir, "root", "images", "rootfs", id),
		filepath.Join("/sys/fs/cgroup/memory", r.cgroupParent, id),
		filepath.Join("/sys/fs/cgroup/unified", r.cgroupParent, id),
	} {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	// Mounts are in cri-shim's private mount namespace: look there.
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", r.monitorPid())); err == nil && strings.Contains(string(data), id) {
		out = append(out, "a mount naming "+id)
	}
	return out
}

func (r *testRuntime) monitorPid() int {
	data, _ := os.ReadFile(filepath.Join(r.dir, "state", "monitor", "monitor.pid"))
	return atoi(strings.TrimSpace(string(data)))
}

// inNode runs a command in the node's network namespace.
func (r *testRuntime) inNode(args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + r.ns}, args...)...).CombinedOutput()
	return string(out), err
}

// kill9 kills the cri-shim daemon (only it: the monitor and the containers
// go on) and waits for it to be gone.
func (r *testRuntime) kill9() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
}

// restart starts the daemon again after it died.
func (r *testRuntime) restart(t *testing.T) {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("cri-shim did not exit")
	}
	if err := r.startCRIShim(); err != nil {
		t.Fatalf("restart cri-shim: %v", err)
	}
}

// leakcheck runs hack/leakcheck against the runtime and returns its
// findings.
func (r *testRuntime) leakcheck(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "leakcheck"), "--socket", r.sock, "--root", filepath.Join(r.dir, "root"),
		"--state", filepath.Join(r.dir, "state"), "--netns", r.ns, "--cni-data", filepath.Join(r.dir, "cni-bridge"),
		"--cgroup-parent", r.cgroupParent).CombinedOutput()
	text := strings.TrimSpace(string(out))
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 1:
		return strings.Split(text, "\n")
	default:
		t.Fatalf("leakcheck: %v: %s", err, text)
		return nil
	}
}
