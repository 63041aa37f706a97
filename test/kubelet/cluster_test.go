package kubelet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// webScript serves /cgi-bin/ip, which answers "<client address> <hostname>".
const webScript = `mkdir -p /www/cgi-bin
cat >/www/cgi-bin/ip <<'EOF'
#!/bin/sh
echo "Content-Type: text/plain"
echo
# httpd listens on IPv6: a v4 client is [::ffff:a.b.c.d].
a=${REMOTE_ADDR#\[}; a=${a%\]}; a=${a#::ffff:}
echo "$a $(hostname)"
EOF
chmod +x /www/cgi-bin/ip
echo "web server $(hostname) starting"
exec httpd -f -v -p 8080 -h /www`

func ptrTo[T any](v T) *T { return &v }

const (
	podMemLimit = 64 << 20
	podCPUMilli = 200
)

// webPod is a Guaranteed pod (limits = requests) on one node.
func webPod(name, nodeName string) *corev1.Pod {
	res := corev1.ResourceList{
		corev1.ResourceMemory: *resource.NewQuantity(podMemLimit, resource.BinarySI),
		corev1.ResourceCPU:    *resource.NewMilliQuantity(podCPUMilli, resource.DecimalSI),
	}
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": nodeName},
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:      "web",
				Image:     busyboxImage,
				Command:   []string{"sh", "-c", webScript},
				Ports:     []corev1.ContainerPort{{ContainerPort: 8080}},
				Resources: corev1.ResourceRequirements{Limits: res, Requests: res},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/cgi-bin/ip", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// startCluster brings up the control plane and two cri-shim nodes with
// kube-proxy, and waits for both nodes to be Ready with a podCIDR.
func startCluster(t *testing.T) (*env, *node, *node) {
	e := newEnv(t)
	start := time.Now()
	e.startControlPlane()
	a := e.addNode(nodeOptions{name: "node-a", ip: "10.100.0.11", kubeProxy: true})
	b := e.addNode(nodeOptions{name: "node-b", ip: "10.100.0.12", kubeProxy: true})
	for _, n := range []*node{a, b} {
		e.waitFor(2*time.Minute, n.name+" Ready", n.kubelet, func() bool { return e.nodeReady(n.name) != nil })
	}
	record(t, "cluster: control plane + 2 nodes Ready in %v", time.Since(start).Round(100*time.Millisecond))
	return e, a, b
}

// nodeReady returns the Node when it is Ready and has a podCIDR.
func (e *env) nodeReady(name string) *corev1.Node {
	n, err := e.cp.client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || n.Spec.PodCIDR == "" {
		return nil
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return n
		}
	}
	return nil
}

func (e *env) waitPodReady(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	waitFor(t, 3*time.Minute, "pod "+name+" Running and Ready", nil, func() bool {
		p, err := e.cp.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || !podReady(p) {
			return false
		}
		pod = p
		return true
	})
	return pod
}

// podExec runs a command in a pod's container through kubectl.
func (e *env) podExec(t *testing.T, pod string, cmd ...string) string {
	t.Helper()
	out, err := e.cp.kubectl("", append([]string{"exec", pod, "--"}, cmd...)...)
	if err != nil {
		t.Fatalf("kubectl exec %s %v: %v: %s", pod, cmd, err, out)
	}
	return strings.TrimSpace(out)
}

// routesVia lists node n's routes to pod subnets: dst -> gateway.
func (n *node) routesVia(t *testing.T) map[string]string {
	t.Helper()
	h, err := handleAt(n.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	cluster := netip.MustParsePrefix(clusterCIDR)
	for _, r := range routes {
		if r.Dst == nil || r.Gw == nil {
			continue
		}
		if p, err := netip.ParsePrefix(r.Dst.String()); err == nil && cluster.Overlaps(p) {
			out[r.Dst.String()] = r.Gw.String()
		}
	}
	return out
}

// TestCluster: a control plane and two nodes running cri-shim, cni-bridge,
// cni-bridge-agent and kube-proxy.
func TestCluster(t *testing.T) {
	e, a, b := startCluster(t)
	cs := e.cp.client
	bg := context.Background()
	nodeA, nodeB := e.nodeReady(a.name), e.nodeReady(b.name)
	t.Logf("podCIDRs: %s %s, %s %s", a.name, nodeA.Spec.PodCIDR, b.name, nodeB.Spec.PodCIDR)

	// The agents route each other's pod subnet via the node IP.
	e.waitFor(30*time.Second, "node-a routes node-b's podCIDR via node-b", a.agent, func() bool {
		return a.routesVia(t)[nodeB.Spec.PodCIDR] == b.ip
	})
	e.waitFor(30*time.Second, "node-b routes node-a's podCIDR via node-a", b.agent, func() bool {
		return b.routesVia(t)[nodeA.Spec.PodCIDR] == a.ip
	})

	start := time.Now()
	for _, p := range []*corev1.Pod{webPod("web-a", a.name), webPod("web-b", b.name)} {
		if _, err := cs.CoreV1().Pods("default").Create(bg, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	podA, podB := e.waitPodReady(t, "web-a"), e.waitPodReady(t, "web-b")
	t.Logf("both pods Ready %v after create (first pull included)", time.Since(start).Round(time.Millisecond))

	t.Run("PodIPsInNodePodCIDR", func(t *testing.T) {
		for _, c := range []struct {
			pod  *corev1.Pod
			node *corev1.Node
		}{{podA, nodeA}, {podB, nodeB}} {
			ip, err := netip.ParseAddr(c.pod.Status.PodIP)
			if err != nil || !netip.MustParsePrefix(c.node.Spec.PodCIDR).Contains(ip) || c.pod.Spec.NodeName != c.node.Name {
				t.Errorf("pod %s on %s has IP %q, want one in %s", c.pod.Name, c.pod.Spec.NodeName, c.pod.Status.PodIP, c.node.Spec.PodCIDR)
			}
		}
	})

	t.Run("CrossNodeNoNAT", func(t *testing.T) {
		for _, c := range []struct{ from, to *corev1.Pod }{{podA, podB}, {podB, podA}} {
			out := e.podExec(t, c.from.Name, "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:8080/cgi-bin/ip", c.to.Status.PodIP))
			if want := c.from.Status.PodIP + " " + c.to.Name; out != want {
				t.Errorf("%s -> %s: server saw %q, want %q (client's pod IP, no NAT)", c.from.Name, c.to.Name, out, want)
			}
		}
	})

	t.Run("KubectlLogs", func(t *testing.T) {
		out, err := e.cp.kubectl("", "logs", "web-a")
		if err != nil || !strings.Contains(out, "web server web-a starting") {
			t.Errorf("kubectl logs web-a: %v: %q", err, out)
		}
	})

	t.Run("KubectlExecStdin", func(t *testing.T) {
		out, err := e.cp.kubectl("stdin goes through\n", "exec", "-i", "web-b", "--", "sh", "-c", "cat; echo done")
		if err != nil || out != "stdin goes through\ndone\n" {
			t.Errorf("kubectl exec -i: %v: %q", err, out)
		}
	})

	t.Run("KubectlPortForward", func(t *testing.T) {
		pf := e.start("port-forward", []string{"nsenter", "--net=" + e.hubNS, "--", filepath.Join(config.kubeBin, "kubectl"),
			"--kubeconfig", e.cp.kubeconfig, "port-forward", "--address", "127.0.0.1", "pod/web-b", "18080:8080"}, nil)
		defer pf.stop(5 * time.Second)
		c := httpIn(e.hubNS)
		var body string
		if err := poll(30*time.Second, pf, func() bool {
			var err error
			body, err = httpGet(c, "http://127.0.0.1:18080/cgi-bin/ip")
			return err == nil
		}); err != nil {
			t.Fatalf("port-forward: %v\n%s", err, pf.tail(20))
		}
		if strings.TrimSpace(body) != "127.0.0.1 web-b" {
			t.Errorf("through port-forward: %q, want %q", body, "127.0.0.1 web-b")
		}
	})

	t.Run("ResourceLimitsInCgroups", func(t *testing.T) {
		for _, c := range []struct {
			pod  *corev1.Pod
			node *node
		}{{podA, a}, {podB, b}} {
			id := c.pod.Status.ContainerStatuses[0].ContainerID
			id = id[strings.Index(id, "://")+3:]
			podCg := filepath.Join(c.node.cgroupRoot, "kubepods", "pod"+string(c.pod.UID))
			checks := map[string]string{
				filepath.Join("/sys/fs/cgroup/memory", podCg, id, "memory.limit_in_bytes"): fmt.Sprint(podMemLimit),
				filepath.Join("/sys/fs/cgroup/memory", podCg, "memory.limit_in_bytes"):     fmt.Sprint(podMemLimit),
				filepath.Join("/sys/fs/cgroup/cpu", podCg, id, "cpu.cfs_quota_us"):         fmt.Sprint(podCPUMilli * 100),
				filepath.Join("/sys/fs/cgroup/cpu", podCg, id, "cpu.shares"):               fmt.Sprint(podCPUMilli * 1024 / 1000),
			}
			for f, want := range checks {
				got, err := os.ReadFile(f)
				if err != nil || strings.TrimSpace(string(got)) != want {
					t.Errorf("%s: %v: %q, want %s", f, err, strings.TrimSpace(string(got)), want)
				}
			}
		}
	})

	t.Run("ServiceClusterIP", func(t *testing.T) {
		svc, err := cs.CoreV1().Services("default").Create(bg, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "2 ready endpoints", nil, func() bool {
			l, err := cs.DiscoveryV1().EndpointSlices("default").List(bg, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
			n := 0
			if err == nil {
				for _, s := range l.Items {
					for _, ep := range s.Endpoints {
						if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
							n++
						}
					}
				}
			}
			return n == 2
		})
		url := fmt.Sprintf("http://%s/cgi-bin/ip", net.JoinHostPort(svc.Spec.ClusterIP, "80"))
		// Each pod asks the Service 30 times: it must be answered by the pod
		// on the other node and by itself (hairpin: the Service sends it
		// back to its own IP through the bridge).
		loop := fmt.Sprintf("for i in $(seq 30); do timeout 3 wget -q -O - %s || echo FAIL; done", url)
		for _, p := range []*corev1.Pod{podA, podB} {
			var out string
			// kube-proxy programs the rules a moment after the endpoints.
			var last string
			if err := poll(30*time.Second, nil, func() bool {
				o, err := e.cp.kubectl("", "exec", p.Name, "--", "timeout", "3", "wget", "-q", "-O", "-", url)
				last = fmt.Sprintf("%v: %s", err, o)
				return err == nil && strings.TrimSpace(o) != ""
			}); err != nil {
				rules, _ := a.run("nft", "list", "ruleset")
				t.Fatalf("%s cannot reach the Service %s: %v; last try: %s\nnode-a's nftables:\n%s", p.Name, url, err, last, rules)
			}
			out = e.podExec(t, p.Name, "sh", "-c", loop)
			seen := map[string]int{}
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) == 2 {
					seen[f[1]]++
				} else {
					seen["error: "+line]++
				}
			}
			t.Logf("%s -> Service %s: answered by %v", p.Name, svc.Spec.ClusterIP, seen)
			if seen["web-a"] == 0 || seen["web-b"] == 0 || len(seen) != 2 {
				t.Errorf("%s -> Service: answers %v, want both web-a and web-b (hairpin and cross-node) and no errors", p.Name, seen)
			}
		}
		record(t, "kube-proxy (%s mode): ClusterIP Service reached pods on both nodes incl. hairpin: %v", proxyMode(), !t.Failed())
	})

	// A RuntimeClass names a handler of cri-shim's [runtimes] table (the
	// nodes configure "alt", runc with a state root of its own: this host
	// has no crun that works; the VM runs crun through the CRI): kubelet
	// resolves it through the API and passes the handler, and the pod's
	// containers live in that runtime's state.
	t.Run("RuntimeClass", func(t *testing.T) {
		if _, err := cs.NodeV1().RuntimeClasses().Create(bg, &nodev1.RuntimeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "alt"}, Handler: altHandler}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := webPod("web-alt", a.name)
		p.Spec.RuntimeClassName = ptrTo("alt")
		if _, err := cs.CoreV1().Pods("default").Create(bg, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ready := e.waitPodReady(t, "web-alt")
		sbs := a.sandboxes(t, "web-alt")
		if len(sbs) != 1 || sbs[0].GetRuntimeHandler() != altHandler {
			t.Fatalf("sandboxes of web-alt: %v, want one with handler %q", sbs, altHandler)
		}
		id := ready.Status.ContainerStatuses[0].ContainerID
		id = id[strings.Index(id, "://")+3:]
		for _, obj := range []string{sbs[0].GetId(), id} {
			if _, err := os.Stat(filepath.Join(a.dir, "cri-shim", "state", "runtimes", altHandler, obj, "state.json")); err != nil {
				t.Errorf("%s is not in the %q runtime's state: %v", obj, altHandler, err)
			}
		}
		if err := cs.CoreV1().Pods("default").Delete(bg, "web-alt", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DeleteIsClean", func(t *testing.T) {
		for _, name := range []string{"web-a", "web-b"} {
			if err := cs.CoreV1().Pods("default").Delete(bg, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, time.Minute, "pods gone from the API", nil, func() bool {
			l, err := cs.CoreV1().Pods("default").List(bg, metav1.ListOptions{})
			return err == nil && len(l.Items) == 0
		})
		for _, n := range []*node{a, b} {
			waitFor(t, 3*time.Minute, n.name+": sandboxes removed (kubelet GCs them every minute)", n.kubelet, func() bool {
				return len(n.sandboxes(t, "")) == 0 && len(n.containers(t, "")) == 0
			})
		}
		time.Sleep(5 * time.Second)
		a.checkNodeClean(t)
		b.checkNodeClean(t)
	})

	t.Run("NodeReaddedWithNewIP", func(t *testing.T) {
		oldCIDR := e.nodeReady(b.name).Spec.PodCIDR
		b.kubelet.stop(20 * time.Second) // or it registers the node again at once
		if err := cs.CoreV1().Nodes().Delete(bg, b.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "node-b gone from the API", nil, func() bool {
			_, err := cs.CoreV1().Nodes().Get(bg, b.name, metav1.GetOptions{})
			return err != nil
		})
		waitFor(t, 30*time.Second, "node-a drops its route to node-b's podCIDR", a.agent, func() bool {
			_, ok := a.routesVia(t)[oldCIDR]
			return !ok
		})
		b.rejoin("10.100.0.22")
		var nb *corev1.Node
		waitFor(t, 2*time.Minute, "node-b back and Ready", b.kubelet, func() bool { nb = e.nodeReady(b.name); return nb != nil })
		t.Logf("node-b re-added with IP %s, podCIDR %s (was %s)", b.ip, nb.Spec.PodCIDR, oldCIDR)
		waitFor(t, 30*time.Second, "node-a routes node-b's podCIDR via its new IP", a.agent, func() bool {
			r := a.routesVia(t)
			for dst, gw := range r {
				if gw == "10.100.0.12" {
					t.Logf("stale route %s via 10.100.0.12", dst)
					return false
				}
			}
			return r[nb.Spec.PodCIDR] == b.ip
		})
		waitFor(t, 30*time.Second, "node-b's CNI config has its podCIDR", b.agent, func() bool {
			data, _ := os.ReadFile(filepath.Join(b.dir, "net.d", "10-cni-bridge.conflist"))
			return strings.Contains(string(data), nb.Spec.PodCIDR)
		})
		// A pod on node-b is reached from a pod on node-a over the new route.
		for _, p := range []*corev1.Pod{webPod("web-a2", a.name), webPod("web-b2", b.name)} {
			if _, err := cs.CoreV1().Pods("default").Create(bg, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		pa, pb := e.waitPodReady(t, "web-a2"), e.waitPodReady(t, "web-b2")
		out := e.podExec(t, "web-a2", "timeout", "5", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:8080/cgi-bin/ip", pb.Status.PodIP))
		if want := pa.Status.PodIP + " web-b2"; out != want {
			t.Errorf("web-a2 -> web-b2 after the re-add: %q, want %q", out, want)
		}
	})
}
