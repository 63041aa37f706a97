package kubelet

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// startupPods is how many pods each runtime starts for the measurement.
func startupPods() int {
	if n, err := strconv.Atoi(os.Getenv("KUBELET_E2E_STARTUP_PODS")); err == nil && n > 0 {
		return n
	}
	return 10
}

// benchPodManifest is a 2-container static pod that only sleeps.
func benchPodManifest(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: one
    image: %[2]s
    command: ["sleep", "3600"]
  - name: two
    image: %[2]s
    command: ["sleep", "3600"]
`, name, busyboxImage)
}

// startupRuntimes are the runtimes TestPodStartupLatency compares: cri-shim
// and its references, Debian's containerd 1.6 and containerd 2.x.
var startupRuntimes = []string{"cri-shim", "containerd", "containerd2"}

// startupPauseImage is every runtime's pause in TestPodStartupLatency:
// cri-shim runs the image containerd runs, not its built-in pause.
const startupPauseImage = "registry.k8s.io/pause:3.10"

// TestPodStartupLatency measures kubelet's pod startup, from writing a
// static pod manifest to the last of its 2 containers started (the
// runtime's own StartedAt, in ns), for cri-shim, Debian's containerd 1.6
// and containerd 2.x, each on a node of its own in the same run, all on
// cni-bridge (runtime against runtime on the same CNI) with the same pause
// image, images already pulled. It fails only when a runtime cannot start
// the pods; the figures and their ratios are recorded.
func TestPodStartupLatency(t *testing.T) {
	requireE2E(t)
	type figures struct{ p50, p90 time.Duration }
	got := map[string]figures{}
	for _, rt := range startupRuntimes {
		t.Run(rt, func(t *testing.T) {
			samples := measureStartup(t, rt)
			got[rt] = figures{percentile(samples, 50), percentile(samples, 90)}
		})
	}
	s, ok := got["cri-shim"]
	if !ok {
		return
	}
	for _, ref := range startupRuntimes[1:] {
		if c, ok := got[ref]; ok {
			record(t, "pod startup ratio cri-shim/%s (same CNI, same pause): p50 %.2fx, p90 %.2fx (target <= 0.4x)",
				ref, float64(s.p50)/float64(c.p50), float64(s.p90)/float64(c.p90))
		}
	}
}

// percentile is the nearest-rank p-th percentile of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(i, 0)]
}

// measureStartup starts startupPods() pods on a fresh node of runtime and
// returns the startup times, sorted.
func measureStartup(t *testing.T, runtime string) []time.Duration {
	e := newEnv(t)
	o := nodeOptions{name: "bench", ip: "10.100.0.60", runtime: runtime, standalonePodCIDR: "10.244.60.0/24", sameCNI: true}
	if runtime == "cri-shim" {
		o.pauseImage = startupPauseImage
	}
	n := e.addNode(o)
	c, cancel := ctx(3 * time.Minute)
	_, err := n.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}})
	cancel()
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	// A first pod warms up everything else (each runtime pulls its pause image).
	if _, err := n.startPod(t, "warmup"); err != nil {
		t.Fatal(err)
	}
	before := n.rpcTotals(t)
	var samples []time.Duration
	for i := range startupPods() {
		d, err := n.startPod(t, fmt.Sprintf("bench-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, d)
		time.Sleep(500 * time.Millisecond) // let kubelet settle (status, PLEG)
	}
	after := n.rpcTotals(t)
	var parts []string
	for _, m := range []string{"RunPodSandbox", "PodSandboxStatus", "ImageStatus", "CreateContainer", "StartContainer",
		"ContainerStatus", "ListContainers", "ListPodSandbox"} {
		sum, count := after[m][0]-before[m][0], after[m][1]-before[m][1]
		if count > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f ms (%d)", m, sum/count*1000, int(count)))
		}
	}
	record(t, "per-RPC mean while kubelet started the pods, %s (its own metrics; counts include this test's polling): %s",
		runtime, strings.Join(parts, ", "))
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	record(t, "pod startup (manifest -> both containers started), %s on cni-bridge: p50 %v, p90 %v over %d pods (min %v, max %v)",
		runtime, percentile(samples, 50).Round(time.Millisecond), percentile(samples, 90).Round(time.Millisecond), len(samples),
		samples[0].Round(time.Millisecond), samples[len(samples)-1].Round(time.Millisecond))
	return samples
}

// startPod writes a manifest and returns the time until the runtime says
// both containers started.
func (n *node) startPod(t *testing.T, name string) (time.Duration, error) {
	t.Helper()
	podName := name + "-" + n.name
	t0 := time.Now()
	n.writeManifest(t, name+".yaml", benchPodManifest(name))
	deadline := t0.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		// The figure comes from the runtime's StartedAt, not from this
		// loop: poll gently, the runtime under test shares the 2 cores.
		time.Sleep(50 * time.Millisecond)
		sbs := n.sandboxes(t, podName)
		if len(sbs) == 0 {
			continue
		}
		ctrs := n.containers(t, sbs[len(sbs)-1].GetId())
		if len(ctrs) < 2 {
			continue
		}
		var last int64
		started := 0
		for _, ctr := range ctrs {
			c, cancel := ctx(10 * time.Second)
			st, err := n.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.GetId()})
			cancel()
			if err != nil || st.GetStatus().GetStartedAt() == 0 {
				continue
			}
			started++
			last = max(last, st.GetStatus().GetStartedAt())
		}
		if started == 2 {
			return time.Unix(0, last).Sub(t0), nil
		}
	}
	return 0, fmt.Errorf("pod %s: containers not started after 2 minutes (see %s)", podName, n.kubelet.log)
}

// rpcTotals scrapes the node runtime's metrics: per CRI method, the total
// seconds and the number of calls (every status code). cri-shim's
// cri_shim_grpc_request_duration_seconds{method}; containerd's
// grpc_server_handling_seconds{grpc_method} (go-grpc-prometheus).
func (n *node) rpcTotals(t *testing.T) map[string][2]float64 {
	t.Helper()
	path, name, label := "/metrics", "cri_shim_grpc_request_duration_seconds", `method="`
	if strings.HasPrefix(n.opts.runtime, "containerd") {
		path, name, label = "/v1/metrics", "grpc_server_handling_seconds", `grpc_method="`
	}
	body, err := httpGet(httpIn(n.ns), "http://"+runtimeMetricsAddr+path)
	if err != nil {
		t.Fatalf("scrape the runtime's metrics: %v", err)
	}
	out := map[string][2]float64{}
	for _, line := range strings.Split(body, "\n") {
		var idx int
		switch {
		case strings.HasPrefix(line, name+"_sum{"):
			idx = 0
		case strings.HasPrefix(line, name+"_count{"):
			idx = 1
		default:
			continue
		}
		_, rest, ok := strings.Cut(line, label)
		if !ok {
			continue
		}
		method, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		e := out[method]
		e[idx] += v
		out[method] = e
	}
	return out
}
