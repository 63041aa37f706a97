package kubelet

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	busyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	soloPodCIDR  = "10.244.50.0/24"
)

// webPodManifest is a static pod: an HTTP server (busybox httpd) with an
// exec readiness probe, and a client fetching from it over localhost.
// Both print their eth0 address at start.
func webPodManifest(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: %[2]s
    command: ["sh", "-c", "echo server-ip $(ip -4 -o addr show eth0); mkdir -p /www; echo hello-from-server >/www/index.html; exec httpd -f -v -p 8080 -h /www"]
    readinessProbe:
      exec:
        command: ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/index.html"]
      periodSeconds: 1
  - name: client
    image: %[2]s
    command: ["sh", "-c", "echo client-ip $(ip -4 -o addr show eth0); while true; do wget -q -O - http://127.0.0.1:8080/index.html; sleep 1; done"]
`, name, busyboxImage)
}

// writeManifest puts a static pod manifest in place atomically (kubelet
// ignores dot files, and sees the rename).
func (n *node) writeManifest(t *testing.T, file, content string) {
	t.Helper()
	tmp := filepath.Join(n.dir, "manifests", "."+file)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.dir, "manifests", file)); err != nil {
		t.Fatal(err)
	}
}

// kubeletPods is kubelet's own view of its pods (GET /pods on its port,
// with the status of static pods filled in when there is no API server).
func (n *node) kubeletPods() ([]corev1.Pod, error) {
	body, err := httpGet(httpIn(n.ns), fmt.Sprintf("https://%s:10250/pods", n.ip))
	if err != nil {
		return nil, err
	}
	var l corev1.PodList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// sandboxes lists the runtime's pod sandboxes of a pod name ("" for all).
func (n *node) sandboxes(t *testing.T, podName string) []*runtimeapi.PodSandbox {
	t.Helper()
	c, cancel := ctx(30 * time.Second)
	defer cancel()
	req := &runtimeapi.ListPodSandboxRequest{}
	if podName != "" {
		req.Filter = &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"io.kubernetes.pod.name": podName}}
	}
	resp, err := n.rt.ListPodSandbox(c, req)
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	return resp.GetItems()
}

func (n *node) containers(t *testing.T, podSandboxID string) []*runtimeapi.Container {
	t.Helper()
	c, cancel := ctx(30 * time.Second)
	defer cancel()
	req := &runtimeapi.ListContainersRequest{}
	if podSandboxID != "" {
		req.Filter = &runtimeapi.ContainerFilter{PodSandboxId: podSandboxID}
	}
	resp, err := n.rt.ListContainers(c, req)
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	return resp.GetContainers()
}

func (n *node) execSync(t *testing.T, containerID string, cmd ...string) string {
	t.Helper()
	c, cancel := ctx(30 * time.Second)
	defer cancel()
	resp, err := n.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{ContainerId: containerID, Cmd: cmd, Timeout: 20})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	if resp.GetExitCode() != 0 {
		t.Fatalf("ExecSync %v: exit %d: %s%s", cmd, resp.GetExitCode(), resp.GetStdout(), resp.GetStderr())
	}
	return string(resp.GetStdout())
}

// eth0IP parses `ip -4 -o addr show eth0` output.
func eth0IP(out string) string {
	f := strings.Fields(out)
	for i, x := range f {
		if x == "inet" && i+1 < len(f) {
			return strings.Split(f[i+1], "/")[0]
		}
	}
	return ""
}

// checkNodeClean fails unless the runtime has no pods or containers left
// and cri-shim no netns pin, runc container or pod cgroup.
func (n *node) checkNodeClean(t *testing.T) {
	t.Helper()
	if s := n.sandboxes(t, ""); len(s) > 0 {
		t.Errorf("%s: runtime still lists %d pod sandboxes", n.name, len(s))
	}
	if c := n.containers(t, ""); len(c) > 0 {
		t.Errorf("%s: runtime still lists %d containers", n.name, len(c))
	}
	state := filepath.Join(n.dir, "cri-shim", "state")
	for _, d := range []string{"netns", "userns"} {
		if ents, _ := os.ReadDir(filepath.Join(state, d)); len(ents) > 0 {
			t.Errorf("%s: namespace pins left in %s/%s: %d", n.name, state, d, len(ents))
		}
	}
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", n.holder.pid()))
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, filepath.Join(state, "netns")+"/") || strings.Contains(line, "/rootfs") && strings.Contains(line, n.dir) {
			t.Errorf("%s: mount left in the node: %s", n.name, line)
		}
	}
	roots, _ := filepath.Glob(filepath.Join(state, "runtimes", "*"))
	for _, root := range append(roots, filepath.Join(state, "runc")) {
		if ents, _ := os.ReadDir(root); len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s: runtime state left in %s: %v", n.name, root, names)
		}
	}
	for _, m := range cgroupMounts() {
		matches, _ := filepath.Glob(filepath.Join(m, n.cgroupRoot, "kubepods", "*", "pod*"))
		direct, _ := filepath.Glob(filepath.Join(m, n.cgroupRoot, "kubepods", "pod*"))
		if len(matches)+len(direct) > 0 {
			t.Errorf("%s: pod cgroups left: %v", n.name, append(matches, direct...))
		}
	}
}

// TestStandaloneKubelet: kubelet without an API server runs a static
// 2-container pod on cri-shim + cni-bridge (config from the agent in
// --pod-cidr mode) and removes it all when the manifest goes.
func TestStandaloneKubelet(t *testing.T) {
	e := newEnv(t)
	n := e.addNode(nodeOptions{name: "solo", ip: "10.100.0.50", standalonePodCIDR: soloPodCIDR})
	start := time.Now()
	n.writeManifest(t, "web.yaml", webPodManifest("web"))
	podName := "web-solo" // static pods are named <name>-<node>

	var pod corev1.Pod
	e.waitFor(3*time.Minute, "static pod Running and Ready", n.kubelet, func() bool {
		pods, err := n.kubeletPods()
		if err != nil {
			return false
		}
		for _, p := range pods {
			if p.Name == podName && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				pod = p
				return true
			}
		}
		return false
	})
	t.Logf("pod Running and Ready %v after the manifest was written (first run pulls the image)", time.Since(start).Round(time.Millisecond))

	sbs := n.sandboxes(t, podName)
	if len(sbs) != 1 {
		t.Fatalf("%d sandboxes for %s, want 1", len(sbs), podName)
	}
	c, cancel := ctx(30 * time.Second)
	st, err := n.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbs[0].GetId()})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	podIP := st.GetStatus().GetNetwork().GetIp()
	if ip, err := netip.ParseAddr(podIP); err != nil || !netip.MustParsePrefix(soloPodCIDR).Contains(ip) {
		t.Errorf("pod IP %q not in the node's podCIDR %s", podIP, soloPodCIDR)
	}
	if pod.Status.PodIP != podIP {
		t.Errorf("kubelet reports pod IP %q, the runtime %q", pod.Status.PodIP, podIP)
	}
	ctrs := n.containers(t, sbs[0].GetId())
	if len(ctrs) != 2 {
		t.Fatalf("%d containers, want 2", len(ctrs))
	}
	for _, ctr := range ctrs {
		if got := eth0IP(n.execSync(t, ctr.GetId(), "ip", "-4", "-o", "addr", "show", "eth0")); got != podIP {
			t.Errorf("container %s sees eth0 %q, want the pod IP %s", ctr.GetMetadata().GetName(), got, podIP)
		}
	}

	// Logs in podLogsDir: <ns>_<name>_<uid>/<container>/0.log.
	logDir := filepath.Join(n.dir, "pod-logs", fmt.Sprintf("default_%s_%s", podName, pod.UID))
	e.waitFor(30*time.Second, "the client's log shows the server's page", nil, func() bool {
		data, _ := os.ReadFile(filepath.Join(logDir, "client", "0.log"))
		return strings.Contains(string(data), "hello-from-server") && strings.Contains(string(data), podIP)
	})
	if data, err := os.ReadFile(filepath.Join(logDir, "server", "0.log")); err != nil || !strings.Contains(string(data), podIP) {
		t.Errorf("server log %s: %v: want the pod IP %s in:\n%s", filepath.Join(logDir, "server", "0.log"), err, podIP, data)
	}

	n.removeStaticPod(t, "web.yaml")
}

// removeStaticPod deletes a manifest and waits until kubelet has removed
// the pod from the runtime (it GCs sandboxes every minute) and the node is
// clean.
func (n *node) removeStaticPod(t *testing.T, manifest string) {
	t.Helper()
	os.Remove(filepath.Join(n.dir, "manifests", manifest))
	n.e.waitFor(3*time.Minute, "the pod removed from the runtime", n.kubelet, func() bool {
		return len(n.sandboxes(t, "")) == 0 && len(n.containers(t, "")) == 0
	})
	// kubelet removes the pod's cgroup in its housekeeping (every 2 s).
	time.Sleep(5 * time.Second)
	n.checkNodeClean(t)
}

// TestStandaloneImageVolume: kubelet (ImageVolume is GA and on) runs a
// static pod with an OCI image as a volume: kubelet pulls it, cri-shim
// mounts it read-only, the container reads a file of it, and deleting the
// manifest leaves nothing.
func TestStandaloneImageVolume(t *testing.T) {
	e := newEnv(t)
	n := e.addNode(nodeOptions{name: "imgvol", ip: "10.100.0.51", standalonePodCIDR: soloPodCIDR})
	n.writeManifest(t, "reader.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: reader
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: reader
    image: %s
    command: ["sh", "-c", "cat /data/usr/share/nginx/html/index.html; touch /data/x 2>&1; sleep 3600"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    image:
      reference: registry.k8s.io/e2e-test-images/nginx:1.14-2
      pullPolicy: IfNotPresent
`, busyboxImage))
	e.waitFor(3*time.Minute, "the image-volume pod Running", n.kubelet, func() bool {
		pods, err := n.kubeletPods()
		if err != nil {
			return false
		}
		for _, p := range pods {
			if p.Name == "reader-imgvol" && p.Status.Phase == corev1.PodRunning {
				return true
			}
		}
		return false
	})
	sbs := n.sandboxes(t, "reader-imgvol")
	if len(sbs) != 1 {
		t.Fatalf("%d sandboxes, want 1", len(sbs))
	}
	ctrs := n.containers(t, sbs[0].GetId())
	if len(ctrs) != 1 {
		t.Fatalf("%d containers, want 1", len(ctrs))
	}
	c, cancel := ctx(30 * time.Second)
	logs, err := n.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: ctrs[0].GetId()})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(30*time.Second, "the container's log shows the image's file", nil, func() bool {
		data, _ := os.ReadFile(logs.GetStatus().GetLogPath())
		return strings.Contains(string(data), "Welcome to nginx") && strings.Contains(string(data), "Read-only file system")
	})
	var imageMount bool
	for _, m := range logs.GetStatus().GetMounts() {
		if m.GetContainerPath() == "/data" && m.GetImage().GetImageRef() != "" {
			imageMount = true
		}
	}
	if !imageMount {
		t.Errorf("ContainerStatus has no image mount at /data with its image_ref: %v", logs.GetStatus().GetMounts())
	}

	n.removeStaticPod(t, "reader.yaml")
}

// TestStandaloneCRIMetrics: kubelet with PodAndContainerStatsFromCRI serves
// /metrics/cadvisor from cri-shim's ListMetricDescriptors and
// ListPodSandboxMetrics: a static pod's CPU and working set appear with its
// namespace, pod, container and image labels, each series once.
func TestStandaloneCRIMetrics(t *testing.T) {
	e := newEnv(t)
	n := e.addNode(nodeOptions{name: "metrics", ip: "10.100.0.52", standalonePodCIDR: soloPodCIDR,
		featureGates: map[string]bool{"PodAndContainerStatsFromCRI": true}})
	n.writeManifest(t, "burner.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: burner
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: burn
    image: %s
    command: ["sh", "-c", "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; sleep 3600"]
`, busyboxImage))
	want := []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
	var body string
	e.waitFor(3*time.Minute, "/metrics/cadvisor with the pod's series", n.kubelet, func() bool {
		b, err := httpGet(httpIn(n.ns), fmt.Sprintf("https://%s:10250/metrics/cadvisor", n.ip))
		if err != nil {
			return false
		}
		body = b
		for _, name := range want {
			if criSeries(body, name, `container="burn"`, `namespace="default"`, `pod="burner-metrics"`, `image="`+busyboxImage+`"`) == "" {
				return false
			}
		}
		return true
	})
	for _, name := range want {
		t.Logf("%s", criSeries(body, name, `container="burn"`, `pod="burner-metrics"`))
	}
	// Every series once: kubelet's registry drops what the runtime sends
	// twice, and logs the scrape as failed.
	seen := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[0], "container_") {
			if seen[f[0]] {
				t.Errorf("/metrics/cadvisor has %s twice", f[0])
			}
			seen[f[0]] = true
		}
	}
	if len(seen) < 40 {
		t.Errorf("/metrics/cadvisor has %d container_* series, want the pod's and its container's (>= 40)", len(seen))
	}
	// The busy loop took seconds of CPU; the CRI carries whole seconds.
	e.waitFor(time.Minute, "the pod's CPU seconds counted", nil, func() bool {
		b, err := httpGet(httpIn(n.ns), fmt.Sprintf("https://%s:10250/metrics/cadvisor", n.ip))
		if err != nil {
			return false
		}
		// NAME{LABELS} VALUE [TIMESTAMP]
		f := strings.Fields(criSeries(b, "container_cpu_usage_seconds_total", `container="burn"`))
		if len(f) < 2 {
			return false
		}
		v, err := strconv.ParseFloat(f[1], 64)
		return err == nil && v >= 1
	})

	n.removeStaticPod(t, "burner.yaml")
}

// criSeries is the first line of a Prometheus text body for metric name
// that has every one of labels.
func criSeries(body, name string, labels ...string) string {
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		ok := true
		for _, want := range labels {
			ok = ok && strings.Contains(l, want)
		}
		if ok {
			return l
		}
	}
	return ""
}

// TestStandaloneUserNamespace: kubelet runs a hostUsers: false static pod
// (KEP-127, GA): cri-shim reports user namespaces, kubelet picks the pod's
// host range, and inside the pod root is 0 mapped onto that non-zero range.
// kubelet asks for every volume idmapped with the pod's mappings, so what
// root writes to an emptyDir is root's on the node too (0:0 on disk); what
// it writes to its own writable layer is the range's first ID on the host.
func TestStandaloneUserNamespace(t *testing.T) {
	e := newEnv(t)
	n := e.addNode(nodeOptions{name: "userns", ip: "10.100.0.53", standalonePodCIDR: soloPodCIDR, freshProc: true})
	n.writeManifest(t, "userns.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: unpriv
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  hostUsers: false
  containers:
  - name: app
    image: %s
    command: ["sh", "-c", "cat /proc/self/uid_map; echo uid=$(id -u); echo data >/cache/f; stat -c 'cache=%%u:%%g' /cache/f; touch /rootf; sleep 3600"]
    volumeMounts:
    - name: cache
      mountPath: /cache
  volumes:
  - name: cache
    emptyDir: {}
`, busyboxImage))
	var pod corev1.Pod
	e.waitFor(3*time.Minute, "the hostUsers: false pod Running", n.kubelet, func() bool {
		pods, err := n.kubeletPods()
		if err != nil {
			return false
		}
		for _, p := range pods {
			if p.Name == "unpriv-userns" && p.Status.Phase == corev1.PodRunning {
				pod = p
				return true
			}
		}
		return false
	})
	sbs := n.sandboxes(t, "unpriv-userns")
	if len(sbs) != 1 {
		t.Fatalf("%d sandboxes, want 1", len(sbs))
	}
	ctrs := n.containers(t, sbs[0].GetId())
	if len(ctrs) != 1 {
		t.Fatalf("%d containers, want 1", len(ctrs))
	}
	logDir := filepath.Join(n.dir, "pod-logs", fmt.Sprintf("default_unpriv-userns_%s", pod.UID), "app")
	var log string
	e.waitFor(30*time.Second, "the container's output", nil, func() bool {
		data, _ := os.ReadFile(filepath.Join(logDir, "0.log"))
		log = string(data)
		return strings.Contains(log, "cache=")
	})
	// CRI log lines: TIME STREAM TAG TEXT; the uid_map line is "0 HOST LENGTH".
	var hostID, length int
	for _, l := range strings.Split(log, "\n") {
		if f := strings.Fields(l); len(f) == 6 && f[3] == "0" {
			hostID, _ = strconv.Atoi(f[4])
			length, _ = strconv.Atoi(f[5])
		}
	}
	t.Logf("the pod's uid_map: 0 -> host %d, %d IDs", hostID, length)
	if hostID <= 0 || length < 65536 {
		t.Errorf("uid_map inside the pod maps 0 to host %d (%d IDs), want a non-zero host range of >= 65536: %s", hostID, length, log)
	}
	for _, want := range []string{"uid=0", "cache=0:0"} {
		if !strings.Contains(log, want) {
			t.Errorf("the container's output lacks %q:\n%s", want, log)
		}
	}
	own := func(p string) string {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	emptyDir := filepath.Join(n.dir, "var-lib", "kubelet", "pods", string(pod.UID), "volumes", "kubernetes.io~empty-dir", "cache", "f")
	upper := filepath.Join(n.dir, "cri-shim", "root", "images", "rootfs", ctrs[0].GetId(), "upper", "rootf")
	for p, want := range map[string]string{emptyDir: "0:0", upper: fmt.Sprintf("%d:%d", hostID, hostID)} {
		if got := own(p); got != want {
			t.Errorf("%s is %s on the host, want %s", p, got, want)
		}
	}
	n.removeStaticPod(t, "userns.yaml")
}
