package kubelet

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// Host-global sysctls kubelet sets at start (cm.setupKernelTunables): each
// node gets private copies bind-mounted over them in its mount namespace.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// runtimeMetricsAddr is where a node's runtime serves Prometheus metrics
// (in the node's network namespace).
const runtimeMetricsAddr = "127.0.0.1:9190"

// altHandler is a RuntimeClass handler every cri-shim node has: runc
// under its own state root.
const altHandler = "alt"

type nodeOptions struct {
	name, ip string
	// runtime is "cri-shim" (default), "containerd" (the reference:
	// Debian's containerd 1.6) or "containerd2" (containerd 2.x,
	// config.containerd2).
	runtime string
	// sameCNI gives a containerd node cni-bridge with the node's pod CIDR
	// (standalone only), the plugin cri-shim nodes have, instead of the
	// standard bridge + host-local + portmap: runtime against runtime.
	sameCNI bool
	// pauseImage is cri-shim's --pause-image (empty: its built-in pause);
	// containerd runs registry.k8s.io/pause:3.10.
	pauseImage string
	// standalonePodCIDR set: kubelet without an API server (static pods),
	// the agent in --pod-cidr mode. Empty: a cluster node (needs e.cp).
	standalonePodCIDR string
	kubeProxy         bool
	// featureGates are kubelet feature gates to set.
	featureGates map[string]bool
	// freshProc runs cri-shim in a mount namespace of its own below the
	// node's, with a /proc of its own: the private sysctl copies bound over
	// the node's /proc/sys make that procfs "not fully visible", and the
	// kernel then refuses a user namespace's root to mount proc (EPERM;
	// mount_too_revealing), which a user-namespaced pod's pause needs. A
	// real node has no such overmounts. kubelet's later mounts do not reach
	// cri-shim then: only for pods without kubelet-mounted volumes.
	freshProc bool
}

// node is one simulated machine: a network namespace with eth0 on the hub's
// bridge, and a "holder" process owning its mount, UTS and IPC namespaces,
// which every daemon of the node joins. In the mount namespace /run is a
// tmpfs, /var/lib and /var/log are the node's own directories (kubelet
// hard-codes /var/lib/kubelet/device-plugins and /var/log/containers), and
// the sysctl files kubelet writes are private copies.
type node struct {
	e          *env
	opts       nodeOptions
	name, ip   string
	dir, ns    string
	cgroupRoot string
	sock       string // the CRI socket

	holder                             *proc
	mntNS                              string
	runtime, kubelet, agent, kubeProxy *proc

	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
}

// addNode makes the node and starts its runtime, agent (for cri-shim),
// kubelet and optionally kube-proxy, and waits for kubelet to be healthy.
func (e *env) addNode(o nodeOptions) *node {
	e.t.Helper()
	if o.runtime == "" {
		o.runtime = "cri-shim"
	}
	n := &node{e: e, opts: o, name: o.name, ip: o.ip, dir: filepath.Join(e.dir, o.name)}
	n.ns = filepath.Join(e.dir, "netns", o.name)
	n.cgroupRoot = e.cgroupRoot + "/" + o.name
	e.mu.Lock()
	e.nodes = append(e.nodes, n)
	e.mu.Unlock()
	for _, d := range []string{"logs", "var-lib/kubelet", "var-lib/cni", "var-log", "sysctl", "net.d", "certs.d",
		"manifests", "pod-logs", "pki", "volume-plugins", "cri-shim/root", "cri-shim/state", "cni-bridge"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := netns.New(n.ns); err != nil {
		e.t.Fatal(err)
	}
	if err := n.plug(o.ip); err != nil {
		e.t.Fatalf("node %s network: %v", n.name, err)
	}
	if err := makeCgroup(n.cgroupRoot); err != nil {
		e.t.Fatalf("node %s cgroup: %v", n.name, err)
	}
	n.startHolder()
	os.WriteFile(filepath.Join(n.dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644)
	switch o.runtime {
	case "cri-shim":
		n.startCRIShim()
		n.startAgent()
	case "containerd", "containerd2":
		n.startContainerd()
	default:
		e.t.Fatalf("unknown runtime %q", o.runtime)
	}
	n.startKubelet()
	if o.kubeProxy {
		n.startKubeProxy()
	}
	return n
}

// plug connects the node to the hub: veth h-<node> on br0, eth0 with ip in
// the node, a default route via the hub (which forwards nothing), and IP
// forwarding on in the node (it routes for its pods).
func (n *node) plug(ip string) error {
	hub, err := handleAt(n.e.hubNS)
	if err != nil {
		return err
	}
	defer hub.Close()
	br, err := hub.LinkByName("br0")
	if err != nil {
		return err
	}
	nodeNS, err := vnetns.GetFromPath(n.ns)
	if err != nil {
		return err
	}
	defer nodeNS.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "h-" + n.name, MTU: 1500, MasterIndex: br.Attrs().Index},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nodeNS))}
	if err := hub.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	if err := hub.LinkSetUp(veth); err != nil {
		return err
	}
	if err := n.setIP(ip); err != nil {
		return err
	}
	return writeSysctlIn(n.ns, "net/ipv4/ip_forward", "1")
}

// setIP gives eth0 ip (replacing any other) and the default route.
func (n *node) setIP(ip string) error {
	h, err := handleAt(n.ns)
	if err != nil {
		return err
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	old, _ := h.AddrList(eth0, netlink.FAMILY_V4)
	for _, a := range old {
		h.AddrDel(eth0, &a)
	}
	addr, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", ip, nodeNetBits))
	if err != nil {
		return err
	}
	if err := h.AddrAdd(eth0, addr); err != nil {
		return err
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return err
	}
	gw, _ := netlink.ParseAddr(hubIP + "/32")
	return h.RouteReplace(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.IP})
}

const holderScript = `set -e
hostname "$NODE_NAME"
mount -t tmpfs -o mode=0755 tmpfs /run
mount --bind "$NODE_DIR/var-lib" /var/lib
mount --bind "$NODE_DIR/var-log" /var/log
for k in $SYSCTLS; do
	f="$NODE_DIR/sysctl/$(echo "$k" | tr / _)"
	[ -f "$f" ] && mount --bind "$f" "/proc/sys/$k"
done
touch "$NODE_DIR/holder.ready"
exec sleep infinity
`

func (n *node) startHolder() {
	var present []string
	for _, k := range kubeletSysctls {
		v, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			continue
		}
		os.WriteFile(filepath.Join(n.dir, "sysctl", strings.ReplaceAll(k, "/", "_")), v, 0o644)
		present = append(present, k)
	}
	n.holder = n.e.start(n.name+"-holder", []string{"nsenter", "--net=" + n.ns, "unshare", "--mount", "--uts", "--ipc",
		"--propagation", "private", "/bin/sh", "-c", holderScript},
		[]string{"NODE_NAME=" + n.name, "NODE_DIR=" + n.dir, "SYSCTLS=" + strings.Join(present, " ")})
	n.e.waitFor(10*time.Second, "node "+n.name+" mount namespace", n.holder, func() bool {
		_, err := os.Stat(filepath.Join(n.dir, "holder.ready"))
		return err == nil
	})
	n.mntNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.holder.pid()))
}

// exec returns argv run inside the node's namespaces.
func (n *node) exec(argv ...string) []string {
	return append([]string{"nsenter", "--target", strconv.Itoa(n.holder.pid()), "--net", "--mount", "--uts", "--ipc", "--"}, argv...)
}

// run runs a short command in the node and returns its combined output.
func (n *node) run(argv ...string) (string, error) {
	full := n.exec(argv...)
	out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
	return string(out), err
}

func (n *node) writeHostsToml(server func(host string) string) {
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws", "docker.io"} {
		d := filepath.Join(n.dir, "certs.d", host)
		os.MkdirAll(d, 0o755)
		toml := fmt.Sprintf("server = %q\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", server(host), registryAddr)
		os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644)
	}
}

func (n *node) startCRIShim() {
	n.writeHostsToml(func(host string) string { return "https://" + host })
	n.sock = filepath.Join(n.dir, "cri.sock")
	shim := []string{filepath.Join(config.shimBin, "cri-shim")}
	if n.opts.freshProc {
		shim = append([]string{"unshare", "--mount", "--propagation", "slave", "/bin/sh", "-c",
			`mount -t proc proc /proc && exec "$0" "$@"`}, shim...)
	}
	// A second RuntimeClass handler (TestCluster's RuntimeClass).
	conf := filepath.Join(n.dir, "cri-shim.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[runtimes.%s]\nbinary = \"runc\"\n", altHandler)), 0o644); err != nil {
		n.e.t.Fatal(err)
	}
	args := append(shim, "--config", conf, "--metrics-address", runtimeMetricsAddr,
		"--listen", n.sock, "--root", filepath.Join(n.dir, "cri-shim", "root"), "--state", filepath.Join(n.dir, "cri-shim", "state"),
		"--cni-conf-dir", filepath.Join(n.dir, "net.d"), "--cni-bin-dir", config.shimBin,
		"--registry-config-dir", filepath.Join(n.dir, "certs.d"), "-v=2")
	if n.opts.pauseImage != "" {
		args = append(args, "--pause-image", n.opts.pauseImage)
	}
	n.runtime = n.e.start(n.name+"-cri-shim", n.exec(args...), nil)
	n.connectCRI()
}

// startContainerd starts Debian's containerd 1.6 or containerd 2.x
// (opts.runtime) with the critest harness's configuration of it.
func (n *node) startContainerd() {
	bin, tmplPath, cniBin, env := config.containerd, "../../hack/critest/containerd.toml", config.cniPlugins, []string(nil)
	if n.opts.runtime == "containerd2" {
		if config.containerd2 == "" {
			n.e.t.Skip("no containerd 2.x (set CONTAINERD2_DIR; hack/kubelet-e2e.sh builds it)")
		}
		// containerd finds its shim on PATH: its own before Debian's 1.6 one.
		bin, tmplPath = filepath.Join(config.containerd2, "containerd"), "../../hack/critest/containerd2.toml"
		env = []string{"PATH=" + config.containerd2 + ":" + os.Getenv("PATH")}
	}
	if bin == "" {
		n.e.t.Skip("no containerd binary (apt-get install containerd, or set CONTAINERD)")
	}
	ctr := filepath.Join(n.dir, "ctr")
	for _, d := range []string{"containerd", "cni/net.d", "runc", "cni-bin"} {
		os.MkdirAll(filepath.Join(ctr, d), 0o755)
	}
	cniFile, cniConf := "../../hack/critest/containerd-cni.conflist", []string{"10.88.0.0/16", n.opts.standalonePodCIDR}
	if n.opts.sameCNI {
		// cni-bridge, as critest.sh --cni cni-bridge gives containerd: its
		// plugin directory holds cni-bridge and the loopback containerd runs.
		cniBin = filepath.Join(ctr, "cni-bin")
		for src, name := range map[string]string{filepath.Join(config.shimBin, "cni-bridge"): "cni-bridge",
			filepath.Join(config.cniPlugins, "loopback"): "loopback"} {
			if err := os.Symlink(src, filepath.Join(cniBin, name)); err != nil {
				n.e.t.Fatal(err)
			}
		}
		cniFile = "../../hack/critest/cri-shim-cni.conflist"
		if n.opts.runtime == "containerd" {
			// containerd 1.6's libcni cannot parse results newer than 1.0.0.
			cniConf = append(cniConf, `"cniVersion": "1.1.0"`, `"cniVersion": "1.0.0"`)
		}
	}
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		n.e.t.Fatal(err)
	}
	conf := strings.NewReplacer("@TMP@", ctr, "@SANDBOX_IMAGE@", "registry.k8s.io/pause:3.10",
		"@CNI_BIN_DIR@", cniBin).Replace(string(tmpl))
	// Its registry mirrors: our hosts.toml directory.
	conf = strings.ReplaceAll(conf, fmt.Sprintf("config_path = %q", ctr+"/certs.d"), fmt.Sprintf("config_path = %q", filepath.Join(n.dir, "certs.d")))
	if strings.Contains(conf, "@") {
		n.e.t.Fatalf("%s has a placeholder this test does not fill:\n%s", tmplPath, conf)
	}
	// Its CRI calls' latency (go-grpc-prometheus), as cri-shim's.
	conf += fmt.Sprintf("\n[metrics]\n  address = %q\n  grpc_histogram = true\n", runtimeMetricsAddr)
	os.WriteFile(filepath.Join(ctr, "containerd.toml"), []byte(conf), 0o644)
	cni, err := os.ReadFile(cniFile)
	if err != nil {
		n.e.t.Fatal(err)
	}
	cniConf = append(cniConf, "@TMP@", ctr)
	os.WriteFile(filepath.Join(ctr, "cni/net.d/10-pods.conflist"), []byte(strings.NewReplacer(cniConf...).Replace(string(cni))), 0o644)
	os.MkdirAll(filepath.Join(ctr, "cni-bridge"), 0o755)
	// containerd 1.6 refuses a hosts.toml without a [host]: the registry is the server too.
	n.writeHostsToml(func(string) string { return "http://" + registryAddr })
	n.sock = filepath.Join(ctr, "containerd.sock")
	n.runtime = n.e.start(n.name+"-"+n.opts.runtime, n.exec(bin, "--config", filepath.Join(ctr, "containerd.toml"), "--log-level", "info"), env)
	n.connectCRI()
}

func (n *node) connectCRI() {
	conn, err := grpc.NewClient("unix://"+n.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.e.t.Fatal(err)
	}
	n.conn = conn
	n.rt = runtimeapi.NewRuntimeServiceClient(conn)
	n.img = runtimeapi.NewImageServiceClient(conn)
	n.e.waitFor(60*time.Second, n.name+" CRI runtime", n.runtime, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := n.rt.Version(ctx, &runtimeapi.VersionRequest{})
		return err == nil
	})
}

func (n *node) startAgent() {
	args := []string{filepath.Join(config.shimBin, "cni-bridge-agent"), "--cni-conf-dir", filepath.Join(n.dir, "net.d"),
		"--data-dir", filepath.Join(n.dir, "cni-bridge"), "--metrics-address", "127.0.0.1:9105", "--resync", "5s", "-v=2"}
	if n.opts.standalonePodCIDR != "" {
		args = append(args, "--pod-cidr", n.opts.standalonePodCIDR)
	} else {
		args = append(args, "--node-name", n.name, "--kubeconfig", n.e.cp.kubeconfig, "--cluster-cidr", clusterCIDR)
	}
	n.agent = n.e.start(n.name+"-agent", n.exec(args...), nil)
	if n.opts.standalonePodCIDR != "" {
		n.e.waitFor(30*time.Second, n.name+" agent's CNI config", n.agent, func() bool {
			_, err := os.Stat(filepath.Join(n.dir, "net.d", "10-cni-bridge.conflist"))
			return err == nil
		})
	}
}

const kubeletConfigTmpl = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
containerRuntimeEndpoint: unix://%[2]s
imageServiceEndpoint: unix://%[2]s
staticPodPath: %[3]s/manifests
podLogsDir: %[3]s/pod-logs
resolvConf: %[3]s/resolv.conf
volumePluginDir: %[3]s/volume-plugins
address: %[4]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
failSwapOn: false
oomScoreAdj: 0
serializeImagePulls: false
clusterDomain: cluster.local
evictionHard:
  memory.available: 10Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
runtimeRequestTimeout: 2m
%[5]s`

func (n *node) startKubelet() {
	extra := ""
	if n.opts.standalonePodCIDR != "" {
		extra = "podCIDR: " + n.opts.standalonePodCIDR + "\n"
	}
	if len(n.opts.featureGates) > 0 {
		extra += "featureGates:\n"
		for _, g := range slices.Sorted(maps.Keys(n.opts.featureGates)) {
			extra += fmt.Sprintf("  %s: %v\n", g, n.opts.featureGates[g])
		}
	}
	conf := fmt.Sprintf(kubeletConfigTmpl, n.cgroupRoot, n.sock, n.dir, n.ip, extra)
	cfgPath := filepath.Join(n.dir, "kubelet.yaml")
	os.WriteFile(cfgPath, []byte(conf), 0o644)
	args := []string{filepath.Join(config.kubeBin, "kubelet"), "--config", cfgPath, "--hostname-override", n.name,
		"--node-ip", n.ip, "--cert-dir", filepath.Join(n.dir, "pki"), "--root-dir", "/var/lib/kubelet", "-v=2"}
	if n.opts.standalonePodCIDR == "" {
		args = append(args, "--kubeconfig", n.e.cp.kubeconfig)
	}
	n.kubelet = n.e.start(n.name+"-kubelet", n.exec(args...), nil)
	c := httpIn(n.ns)
	n.e.waitFor(90*time.Second, n.name+" kubelet healthz", n.kubelet, func() bool {
		_, err := httpGet(c, "http://127.0.0.1:10248/healthz")
		return err == nil
	})
}

const kubeProxyConfigTmpl = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: %s
clusterCIDR: %s
hostnameOverride: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

// proxyMode is kube-proxy's mode in the cluster tests (KUBE_PROXY_MODE:
// nftables, the default, or iptables).
func proxyMode() string { return envOr("KUBE_PROXY_MODE", "nftables") }

func (n *node) startKubeProxy() {
	cfgPath := filepath.Join(n.dir, "kube-proxy.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(kubeProxyConfigTmpl, n.e.cp.kubeconfig, proxyMode(), clusterCIDR, n.name)), 0o644)
	n.kubeProxy = n.e.start(n.name+"-kube-proxy", n.exec(filepath.Join(config.kubeBin, "kube-proxy"), "--config", cfgPath, "-v=2"), nil)
	c := httpIn(n.ns)
	n.e.waitFor(60*time.Second, n.name+" kube-proxy healthz", n.kubeProxy, func() bool {
		_, err := httpGet(c, "http://127.0.0.1:10256/healthz")
		return err == nil
	})
}

// rejoin brings the node back with a new IP on eth0, as a re-installed
// machine: its API clients (kubelet, agent, kube-proxy) start afresh. (Ones
// left running would sit on connections from the removed address until
// their HTTP/2 health checks give up.)
func (n *node) rejoin(newIP string) {
	n.kubelet.stop(20 * time.Second)
	n.agent.stop(10 * time.Second)
	n.kubeProxy.stop(10 * time.Second)
	if err := n.setIP(newIP); err != nil {
		n.e.t.Fatal(err)
	}
	n.ip = newIP
	n.startAgent()
	n.startKubelet()
	if n.opts.kubeProxy {
		n.startKubeProxy()
	}
}

// ctx is a bounded context for one CRI call.
func ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// teardown stops the node's daemons, removes its pods through the runtime,
// stops the runtime and its helpers, and kills anything still in the
// node's mount namespace. It returns what was left behind.
func (n *node) teardown() (leftovers []string) {
	n.kubeProxy.stop(10 * time.Second)
	n.kubelet.stop(20 * time.Second)
	n.agent.stop(10 * time.Second)
	if n.rt != nil && n.runtime != nil && n.runtime.alive() {
		c, cancel := ctx(3 * time.Minute)
		if resp, err := n.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range resp.GetItems() {
				n.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()})
				if _, err := n.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
					leftovers = append(leftovers, fmt.Sprintf("%s: remove pod %s: %v", n.name, p.GetId(), err))
				}
			}
		}
		cancel()
	}
	if n.conn != nil {
		n.conn.Close()
	}
	n.runtime.stop(20 * time.Second)
	// cri-shim's monitor and containerd's shims outlive their daemon by design.
	pidFiles, _ := filepath.Glob(filepath.Join(n.dir, "cri-shim", "state", "monitor", "monitor.pid"))
	shims, _ := filepath.Glob(filepath.Join(n.dir, "ctr", "containerd", "state", "io.containerd.runtime.v2.task", "*", "*", "shim.pid"))
	for _, f := range append(pidFiles, shims...) {
		data, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
			stopPID(pid, 10*time.Second)
		}
	}
	leftovers = append(leftovers, deleteRuncLeftovers(n.dir)...)
	if n.holder != nil && n.mntNS != "" {
		for _, pid := range pidsInMntNS(n.mntNS) {
			if pid == n.holder.pid() {
				continue
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			leftovers = append(leftovers, fmt.Sprintf("%s: process %d (%s) still running: SIGKILL", n.name, pid,
				strings.ReplaceAll(strings.TrimSpace(string(cmdline)), "\x00", " ")))
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	n.holder.stop(5 * time.Second)
	return leftovers
}

// stopPID stops a process that is not our child (SIGTERM, then SIGKILL).
func stopPID(pid int, grace time.Duration) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// deleteRuncLeftovers force-deletes containers still in a runc root under
// dir (found by their state.json).
func deleteRuncLeftovers(dir string) (leftovers []string) {
	roots := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (d.Name() == "rootfs" || d.Name() == "var-lib" || d.Name() == "content") {
			return filepath.SkipDir
		}
		if d.Name() == "state.json" {
			if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), `"init_process_pid"`) {
				roots[filepath.Dir(filepath.Dir(p))] = true
			}
		}
		return nil
	})
	for root := range roots {
		out, _ := exec.Command("runc", "--root", root, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			leftovers = append(leftovers, fmt.Sprintf("runc container %s in %s: delete --force", id, root))
			exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		}
	}
	return leftovers
}
