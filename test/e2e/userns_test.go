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

// usernsMapping is the kubelet's kind of mapping: container IDs 0-65535 to
// an unprivileged host range.
func usernsMapping(host uint32) []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: 65536}}
}

func withUserNS(cfg *runtimeapi.PodSandboxConfig, opts *runtimeapi.UserNamespace) *runtimeapi.PodSandboxConfig {
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: opts}}
	return cfg
}

func ownerOf(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// TestUserNamespacePod drives a hostUsers: false pod (KEP-127) through the
// gRPC API: the pod's root is host ID 200000, sees the image's files and an
// idmapped volume as its own, and what it writes lands on the host with the
// right owners; bad user namespace options are InvalidArgument and leave
// nothing.
func TestUserNamespacePod(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)
	st, err := r.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.GetRuntimeHandlers() {
		if (h.GetName() == "" || h.GetName() == "runc") && !h.GetFeatures().GetUserNamespaces() {
			t.Fatalf("handler %q reports no user namespaces: runc on PATH cannot idmap mounts (hack/install-runc.sh installs one that can)", h.GetName())
		}
	}

	const host = 200000
	vol, plain := t.TempDir(), t.TempDir()
	if err := os.Chmod(plain, 0o777); err != nil {
		t.Fatal(err)
	}
	pod := withUserNS(r.podConfig("userns"), &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
		Uids: usernsMapping(host), Gids: usernsMapping(host)})
	pod.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: 18091}}
	podID := r.runPod(t, pod)
	cfg := container("app", busyboxImage, "sleep", "3600")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: pod.Linux.SecurityContext.NamespaceOptions}}
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/vol", HostPath: vol, UidMappings: usernsMapping(host), GidMappings: usernsMapping(host)},
		{ContainerPath: "/plain", HostPath: plain},
	}
	id := r.startContainer(t, podID, pod, cfg)

	for _, tc := range []struct{ cmd, want string }{
		{"cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'", "0 200000 65536\n0 200000 65536\n"},
		{"id -u; id -g", "0\n0\n"},
		// The image's files are root's inside (idmapped layers), so is /.
		{"stat -c %u:%g /etc/passwd /bin/busybox /", "0:0\n0:0\n0:0\n"},
		{"touch /rootfile && stat -c %u:%g /rootfile", "0:0\n"},
		// The idmapped volume is root's; the plain one, root's on the host, nobody's.
		{"stat -c %u:%g /vol /plain", "0:0\n65534:65534\n"},
		{"echo v >/vol/f && echo p >/plain/g && mkdir /vol/d && echo ok", "ok\n"},
		// The pod's files are the pod root's to change.
		{"echo '10.0.0.1 extra' >>/etc/hosts && tail -1 /etc/hosts && stat -c %u /etc/hosts /etc/resolv.conf", "10.0.0.1 extra\n0\n0\n"},
		// sysfs is the pod's: its network namespace is owned by its user namespace.
		{"cat /sys/class/net/lo/operstate >/dev/null && echo sysfs", "sysfs\n"},
	} {
		if out, code := r.execSync(t, id, "sh", "-c", tc.cmd); out != tc.want || code != 0 {
			t.Errorf("%s: exit %d, %q, want %q", tc.cmd, code, out, tc.want)
		}
	}
	// Seen from the host: an idmapped volume stores container root as the
	// node's root (kubelet's volumes stay the node's files); without idmap
	// the pod's root is host ID 200000; the writable layer is 200000's.
	for path, want := range map[string]string{
		filepath.Join(vol, "f"): "0:0", filepath.Join(vol, "d"): "0:0", filepath.Join(plain, "g"): "200000:200000",
		filepath.Join(r.dir, "root", "images", "rootfs", id, "upper", "rootfile"): "200000:200000",
	} {
		if got := ownerOf(t, path); got != want {
			t.Errorf("%s is owned by %s on the host, want %s", path, got, want)
		}
	}
	// Every process of the pod runs in the pinned user namespace as a host
	// ID of its range.
	// (The pin is mounted in cri-shim's private mount namespace.)
	pin := filepath.Join("/proc", strconv.Itoa(r.monitorPid()), "root", r.dir, "state", "userns", podID)
	var pinSt syscall.Stat_t
	if err := syscall.Stat(pin, &pinSt); err != nil {
		t.Fatalf("the pod's user namespace pin: %v", err)
	}
	procs := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var nsSt syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "user"), &nsSt) != nil || nsSt.Ino != pinSt.Ino || nsSt.Dev != pinSt.Dev {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		procs++
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) != 5 || f[0] != "Uid:" {
				continue
			}
			// The pause runs as 65535 inside, the container as 0.
			if uid := atoi(f[1]); uid != host && uid != host+65535 {
				t.Errorf("process %s of the pod runs as host UID %d, want %d or %d", e.Name(), uid, host, host+65535)
			}
		}
	}
	if procs < 2 { // the pause and sleep
		t.Errorf("%d processes in the pod's user namespace, want the pause and the container's", procs)
	}

	// A server in the pod: its log, hostPort and the pod's stats work as
	// in any pod.
	web := container("web", busyboxImage, "sh", "-c", "mkdir -p /www && echo userns-web >/www/index.html && echo serving && exec httpd -f -p 8080 -h /www")
	web.LogPath = "web.log"
	webID := r.startContainer(t, podID, pod, web)
	var page string
	if err := waitFor(30*time.Second, func() bool {
		page, _ = r.inNode("wget", "-qO-", "-T", "2", "http://127.0.0.1:18091/")
		return strings.Contains(page, "userns-web")
	}); err != nil {
		t.Errorf("hostPort 18091 of the user-namespaced pod: %q", page)
	}
	// port-forward enters the pod's network namespace, which the pod's
	// user namespace owns.
	pf := newCrictl(t, r).cmd("port-forward", podID, "18092:8080")
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(15*time.Second, func() bool {
		page, _ = r.inNode("wget", "-qO-", "-T", "2", "http://127.0.0.1:18092/")
		return strings.Contains(page, "userns-web")
	}); err != nil {
		t.Errorf("crictl port-forward into the user-namespaced pod: %q", page)
	}
	pf.Process.Kill()
	pf.Wait()
	if data, err := os.ReadFile(filepath.Join(pod.LogDirectory, "web.log")); err != nil || !strings.Contains(string(data), "stdout F serving") {
		t.Errorf("the container's CRI log: %q, %v", data, err)
	}
	stats, err := r.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil || stats.GetStats().GetLinux().GetMemory().GetWorkingSetBytes().GetValue() == 0 || len(stats.GetStats().GetLinux().GetContainers()) != 2 {
		t.Errorf("PodSandboxStats of the user-namespaced pod: %v, %v", stats, err)
	}

	// procMount: Unmasked (kubelet sends no masked paths, only allowed
	// with a user namespace) leaves /proc unmasked; Default masks.
	// (/proc/keys: this kernel has no /proc/kcore.)
	const procMounts = "grep -c ' /proc/keys ' /proc/mounts; grep -c ' /proc/sys proc ro,' /proc/mounts"
	if out, _ := r.execSync(t, id, "sh", "-c", procMounts); out != "0\n0\n" {
		t.Errorf("/proc/keys masked or /proc/sys read-only in a container with no masked paths in a user namespace: %q", out)
	}
	masked := container("masked", busyboxImage, "sleep", "3600")
	masked.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		MaskedPaths: []string{"/proc/keys"}, ReadonlyPaths: []string{"/proc/sys"}}}
	maskedID := r.startContainer(t, podID, pod, masked)
	if out, _ := r.execSync(t, maskedID, "sh", "-c", procMounts); out != "1\n1\n" {
		t.Errorf("masked container: %q, want /proc/keys masked and /proc/sys read-only", out)
	}

	// A container cannot leave the pod's user namespace.
	for _, opts := range []*runtimeapi.UserNamespace{
		{Mode: runtimeapi.NamespaceMode_NODE},
		{Mode: runtimeapi.NamespaceMode_POD, Uids: usernsMapping(host + 65536), Gids: usernsMapping(host + 65536)},
	} {
		c := container("escape", busyboxImage, "true")
		c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: opts}}}
		_, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: pod})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("container with user namespace %v: %v, want InvalidArgument", opts, err)
		}
	}

	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []string{podID, id, maskedID, webID} {
		if leaks := r.leaks(x); len(leaks) > 0 {
			t.Errorf("left after removal: %v", leaks)
		}
	}
}

// TestUserNamespaceInvalid: user namespace options the CRI forbids are
// InvalidArgument with a message that says why, and leave nothing.
func TestUserNamespaceInvalid(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)
	m := usernsMapping(300000)
	for _, tc := range []struct {
		desc string
		opts *runtimeapi.UserNamespace
		host bool // host network
		want string
	}{
		{"CONTAINER mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, false, "not supported"},
		{"TARGET mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}, false, "not supported"},
		{"two mappings", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: append(usernsMapping(300000), &runtimeapi.IDMapping{ContainerId: 0, HostId: 400000, Length: 65536}), Gids: m}, false, "exactly one"},
		{"no mappings", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}, false, "exactly one"},
		{"root not mapped", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 300000, Length: 65536}}, Gids: m}, false, "container ID 0"},
		{"empty mapping", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: m, Gids: []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 300000}}}, false, "length 0"},
		{"NODE with mappings", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: m, Gids: m}, false, "no ID mappings"},
		{"host network", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}, true, "host's network"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			pod := withUserNS(r.podConfig("userns-bad"), tc.opts)
			if tc.host {
				pod.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
			}
			_, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RunPodSandbox: %v, want InvalidArgument saying %q", err, tc.want)
			}
			list, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
				LabelSelector: nil}})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list.GetItems() {
				if p.GetMetadata().GetUid() == pod.GetMetadata().GetUid() {
					t.Errorf("refused pod listed: %s", p.GetId())
				}
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(r.dir, "state", "userns")); len(entries) > 0 {
		for _, e := range entries {
			// Other tests' pods may run on the shared runtime: only pins of
			// pods the CRI does not list are leaks.
			if _, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: e.Name()}); status.Code(err) == codes.NotFound {
				t.Errorf("user namespace pin %s of no pod", e.Name())
			}
		}
	}
}
