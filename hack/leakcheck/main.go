// Command leakcheck compares what a cri-shim holds on the node with what
// it reports: netns and userns pins, veths of its network, IPAM reservations, mounts,
// cgroups, runc containers, bundles and monitor processes, against the
// sandboxes and containers the CRI lists. It prints one line per leak and
// exits 1 if there is any; tests run it after every fault, operators can run
// it any time.
//
//	leakcheck --socket SOCK --root DIR --state DIR [--netns NODE_NS] [--cni-data DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	sock := flag.String("socket", "/run/cri-shim/cri-shim.sock", "cri-shim's socket")
	root := flag.String("root", "/var/lib/cri-shim", "cri-shim's --root")
	state := flag.String("state", "/run/cri-shim", "cri-shim's --state")
	nodeNS := flag.String("netns", "", "network namespace cri-shim runs in (default: the caller's)")
	cniData := flag.String("cni-data", "", "cni-bridge dataDir of the pod network (reservations are checked when set)")
	cgroupParent := flag.String("cgroup-parent", "/cri-shim", "cgroup parent of pods that give none")
	flag.Parse()
	leaks, err := check(*sock, *root, *state, *nodeNS, *cniData, *cgroupParent)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leakcheck:", err)
		os.Exit(2)
	}
	for _, l := range leaks {
		fmt.Println(l)
	}
	if len(leaks) > 0 {
		os.Exit(1)
	}
}

// live is what the CRI reports.
type live struct {
	sandboxes  map[string]*runtimeapi.PodSandbox
	containers map[string]*runtimeapi.Container
}

func (l live) has(id string) bool { return l.sandboxes[id] != nil || l.containers[id] != nil }

func list(sock string) (live, error) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return live{}, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return live{}, fmt.Errorf("list sandboxes: %w", err)
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return live{}, fmt.Errorf("list containers: %w", err)
	}
	l := live{sandboxes: map[string]*runtimeapi.PodSandbox{}, containers: map[string]*runtimeapi.Container{}}
	for _, p := range pods.GetItems() {
		l.sandboxes[p.GetId()] = p
	}
	for _, c := range ctrs.GetContainers() {
		l.containers[c.GetId()] = c
	}
	return l, nil
}

func entries(dir string) []string {
	des, _ := os.ReadDir(dir)
	var out []string
	for _, d := range des {
		if !strings.HasPrefix(d.Name(), ".") {
			out = append(out, d.Name())
		}
	}
	return out
}

func check(sock, root, state, nodeNS, cniData, cgroupParent string) ([]string, error) {
	l, err := list(sock)
	if err != nil {
		return nil, err
	}
	var leaks []string
	leak := func(format string, args ...any) { leaks = append(leaks, fmt.Sprintf(format, args...)) }
	ready := map[string]bool{}
	for id, p := range l.sandboxes {
		if p.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready[id] = true
		}
	}

	// Per-object state: only what the CRI still lists may have it; network
	// state only ready sandboxes.
	for _, kind := range []string{"netns", "userns"} {
		for _, id := range entries(filepath.Join(state, kind)) {
			if !ready[id] {
				leak("%s pin %s of a sandbox that is not ready", kind, id)
			}
		}
	}
	for _, id := range entries(filepath.Join(state, "shm")) {
		if !ready[id] {
			leak("/dev/shm of %s, a sandbox that is not ready", id)
		}
	}
	for _, d := range []string{"runc", "bundles"} {
		for _, id := range entries(filepath.Join(state, d)) {
			if !l.has(id) {
				leak("%s/%s of an object the CRI does not list", d, id)
			}
		}
	}
	for _, id := range entries(filepath.Join(state, "monitor", "io")) {
		if !l.has(id) {
			leak("monitor I/O of %s, an object the CRI does not list", id)
		}
	}
	for _, id := range entries(filepath.Join(root, "images", "rootfs")) {
		if l.containers[id] == nil {
			leak("rootfs of %s, a container the CRI does not list", id)
		}
	}
	for _, d := range []string{"sandboxes", "containers"} {
		for _, id := range entries(filepath.Join(root, d)) {
			if !l.has(id) {
				leak("record %s/%s the CRI does not list", d, id)
			}
		}
	}

	// Mounts, seen from the monitor's mount namespace (cri-shim may run in
	// a private one).
	mountinfo := "/proc/self/mountinfo"
	if pid := monitorPid(state); pid != "" {
		mountinfo = "/proc/" + pid + "/mountinfo"
	}
	if data, err := os.ReadFile(mountinfo); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			mp := f[4]
			for _, prefix := range []string{filepath.Join(state, "netns") + "/", filepath.Join(state, "userns") + "/",
				filepath.Join(state, "shm") + "/", filepath.Join(root, "images", "rootfs") + "/"} {
				if rest, ok := strings.CutPrefix(mp, prefix); ok {
					id := strings.Split(rest, "/")[0]
					if !l.has(id) {
						leak("mount %s of an object the CRI does not list", mp)
					}
				}
			}
		}
	}

	// Cgroups under the default parent: one per live container or pause,
	// in every v1 hierarchy (/sys/fs/cgroup/<ctrl>/...) or in the v2 tree
	// (/sys/fs/cgroup/...); a cgroupfs directory is named by the ID, a
	// systemd scope cri-shim-<ID>.scope.
	var cgroupDirs []string
	for _, pattern := range []string{"/sys/fs/cgroup/*", "/sys/fs/cgroup"} {
		m, _ := filepath.Glob(filepath.Join(pattern, cgroupParent, "*"))
		cgroupDirs = append(cgroupDirs, m...)
	}
	for _, d := range cgroupDirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(d), "cri-shim-"), ".scope")
		if len(id) == 64 && !l.has(id) {
			leak("cgroup %s of an object the CRI does not list", d)
		}
	}

	// Monitor processes for this state directory: exactly one.
	if n := monitorCount(state); n != 1 {
		leak("%d monitor processes for %s (want 1)", n, state)
	}

	// The pod network: a host veth per ready sandbox, and reservations.
	if nodeNS != "" {
		out, err := exec.Command("nsenter", "--net="+nodeNS, "ip", "-o", "link", "show", "type", "veth").Output()
		if err == nil {
			n := 0
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if strings.Contains(line, ": cbr") {
					n++
				}
			}
			if want := podsWithNetwork(l); n != want {
				leak("%d pod veths in the node, %d ready sandboxes with a pod network", n, want)
			}
		}
	}
	if cniData != "" {
		ips, _ := filepath.Glob(filepath.Join(cniData, "*", "ipam", "ips", "*"))
		if want := podsWithNetwork(l); len(ips) != want {
			leak("%d IPAM reservations, %d ready sandboxes with a pod network", len(ips), want)
		}
	}
	sort.Strings(leaks)
	return leaks, nil
}

func podsWithNetwork(l live) int {
	n := 0
	for _, p := range l.sandboxes {
		if p.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			n++
		}
	}
	return n
}

func monitorPid(state string) string {
	data, err := os.ReadFile(filepath.Join(state, "monitor", "monitor.pid"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// monitorCount counts the cri-shim-monitor processes serving state.
func monitorCount(state string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	want := filepath.Join(state, "monitor")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if len(args) >= 3 && filepath.Base(args[0]) == "cri-shim-monitor" && args[1] == "--dir" && args[2] == want {
			if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
				continue // a zombie waiting for its parent is not serving
			}
			n++
		}
	}
	return n
}
