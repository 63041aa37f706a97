// Command memory measures what a runtime costs per running pod, and what
// pod churn does to it. It runs inside hack/critest.sh --exec, which starts
// the runtime under test (cri-shim or containerd) in throwaway namespaces
// and passes CRI_SOCK, RUNTIME, RUN_DIR and RUNTIME_PID.
//
//	pss:   PSS (smaps_rollup) of the daemon + its monitor (cri-shim) or
//	       shims (containerd) + the pause processes, per running pod, at
//	       10, 50 and 110 pods (each with one `sleep` container, not counted)
//	churn: RSS of the daemon before and after 1000 pod lifecycles, 10 in
//	       parallel, and (cri-shim) hack/leakcheck afterwards
//	rpc:   p50/p99 of the list, status, stats and metrics RPCs kubelet
//	       calls, at 110 pods x 3 containers (kubelet's default maximum)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	image        = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	cgroupParent = "/bench-memory"
)

type bench struct {
	rt      runtimeapi.RuntimeServiceClient
	img     runtimeapi.ImageServiceClient
	runtime string
	runDir  string
	label   string // what the rows say: BENCH_LABEL, else the runtime
	pid     int
	seq     atomic.Int64
}

func main() {
	mode := flag.String("mode", "pss", "pss, churn or rpc")
	counts := flag.String("pods", "10,50,110", "pod counts to measure at (pss)")
	lifecycles := flag.Int("lifecycles", 1000, "pod lifecycles (churn)")
	parallel := flag.Int("parallel", 10, "lifecycles in parallel (churn)")
	rpcPods := flag.Int("rpc-pods", 110, "pods (rpc)")
	rpcContainers := flag.Int("rpc-containers", 3, "containers per pod (rpc)")
	rounds := flag.Int("rounds", 100, "calls of each RPC (rpc)")
	flag.Parse()
	conn, err := grpc.NewClient("unix://"+os.Getenv("CRI_SOCK"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	pid, _ := strconv.Atoi(os.Getenv("RUNTIME_PID"))
	b := &bench{rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn),
		runtime: os.Getenv("RUNTIME"), runDir: os.Getenv("RUN_DIR"), pid: pid, label: os.Getenv("BENCH_LABEL")}
	if b.label == "" {
		b.label = b.runtime
	}
	ctx := context.Background()
	if _, err := b.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		fail(err)
	}
	switch *mode {
	case "pss":
		err = b.pss(ctx, *counts)
	case "churn":
		err = b.churn(ctx, *lifecycles, *parallel)
	case "rpc":
		err = b.rpc(ctx, *rpcPods, *rpcContainers, *rounds)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	// The runtimes make the pods' cgroups under cgroupParent and leave the
	// parent itself: remove it once empty (in every hierarchy).
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupParent))
	if d := filepath.Join("/sys/fs/cgroup", cgroupParent); len(dirs) == 0 {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		os.Remove(d) // rmdir; fails (and stays) while anything is left in it
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "memory:", err)
	os.Exit(1)
}

// startPod runs a pod with n sleeping containers and returns its ID.
func (b *bench) startPod(ctx context.Context, n int) (string, error) {
	seq := b.seq.Add(1)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("mem-%d", seq), Namespace: "bench", Uid: fmt.Sprintf("uid-%d", seq)},
		Hostname:     "mem",
		LogDirectory: filepath.Join(b.runDir, "bench-logs", strconv.FormatInt(seq, 10)),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: cgroupParent},
	}
	run, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", err
	}
	for i := range n {
		name := "sleep"
		if i > 0 {
			name = fmt.Sprintf("sleep-%d", i)
		}
		c, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: run.GetPodSandboxId(), SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: image},
				Command: []string{"sleep", "3600"}, LogPath: name + ".log",
				Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
			}})
		if err != nil {
			return "", err
		}
		if _, err := b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
			return "", err
		}
	}
	return run.GetPodSandboxId(), nil
}

func (b *bench) removePod(ctx context.Context, id string) error {
	if _, err := b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return err
	}
	_, err := b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

// pssKB reads a process's proportional set size.
func pssKB(pid int) int {
	return smapsField(pid, "Pss:")
}

func rssKB(pid int) int { return smapsField(pid, "Rss:") }

func smapsField(pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// helpers are the runtime's per-node or per-pod helper processes: cri-shim's
// monitor, containerd's shims.
func (b *bench) helpers() []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		base := filepath.Base(args[0])
		joined := strings.Join(args, " ")
		if (base == "cri-shim-monitor" || base == "containerd-shim-runc-v2") && strings.Contains(joined, b.runDir) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, pid)
		}
	}
	return out
}

// pausePids are the processes of the sandboxes' own cgroups (the pause
// process of each pod; workload containers have cgroups of their own).
func (b *bench) pausePids(sandboxes map[string]bool) []int {
	var out []int
	for id := range sandboxes {
		data, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", cgroupParent, id, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
	}
	return out
}

func (b *bench) pss(ctx context.Context, counts string) error {
	sandboxes := map[string]bool{}
	fmt.Printf("%-24s %5s %10s %12s %10s %10s %12s\n", "runtime", "pods", "daemon kB", "helpers kB", "pause kB", "total kB", "per pod kB")
	for _, c := range strings.Split(counts, ",") {
		want, _ := strconv.Atoi(c)
		for len(sandboxes) < want {
			id, err := b.startPod(ctx, 1)
			if err != nil {
				return err
			}
			sandboxes[id] = true
		}
		time.Sleep(3 * time.Second) // let lazily touched pages settle
		daemon := pssKB(b.pid)
		helpers := 0
		for _, p := range b.helpers() {
			helpers += pssKB(p)
		}
		pause := 0
		for _, p := range b.pausePids(sandboxes) {
			pause += pssKB(p)
		}
		total := daemon + helpers + pause
		fmt.Printf("%-24s %5d %10d %12d %10d %10d %12.1f\n", b.label, want, daemon, helpers, pause, total, float64(total)/float64(want))
	}
	for id := range sandboxes {
		if err := b.removePod(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) churn(ctx context.Context, lifecycles, parallel int) error {
	// Warm up so the "before" figure is not a cold process.
	for range 10 {
		id, err := b.startPod(ctx, 1)
		if err != nil {
			return err
		}
		if err := b.removePod(ctx, id); err != nil {
			return err
		}
	}
	time.Sleep(2 * time.Second)
	before := rssKB(b.pid)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(lifecycles) {
				id, err := b.startPod(ctx, 1)
				if err == nil {
					err = b.removePod(ctx, id)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	elapsed := time.Since(start)
	time.Sleep(5 * time.Second)
	after := rssKB(b.pid)
	fmt.Printf("%s: %d pod lifecycles (with a container), %d in parallel, in %s (%.0f/s)\n", b.label, lifecycles, parallel,
		elapsed.Round(time.Second), float64(lifecycles)/elapsed.Seconds())
	fmt.Printf("%s: daemon RSS before %d kB, after %d kB (%+.1f%%)\n", b.label, before, after, 100*float64(after-before)/float64(before))
	if b.runtime == "cri-shim" {
		out, err := exec.Command(filepath.Join(b.runDir, "bin", "leakcheck"), "--socket", os.Getenv("CRI_SOCK"),
			"--root", filepath.Join(b.runDir, "cri-shim", "root"), "--state", filepath.Join(b.runDir, "cri-shim", "state"),
			"--cni-data", filepath.Join(b.runDir, "cni-bridge"), "--cgroup-parent", cgroupParent).CombinedOutput()
		if err != nil {
			fmt.Printf("cri-shim: leakcheck found leaks:\n%s", out)
			return fmt.Errorf("leaks after churn")
		}
		fmt.Printf("cri-shim: leakcheck: no leaks\n")
	}
	return nil
}
