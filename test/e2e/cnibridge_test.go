package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

func TestCNIThreePodsReachEachOther(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	list := n.conflist(nil)
	pods := []*pod{n.newPod("pod-a", nil), n.newPod("pod-b", nil), n.newPod("pod-c", nil)}
	seen := map[string]bool{}
	_, subnet, _ := net.ParseCIDR("10.244.1.0/24")
	for _, p := range pods {
		res := n.mustAdd(list, p)
		if len(res.IPs) != 1 || !subnet.Contains(p.ip) || seen[p.ip.String()] {
			t.Fatalf("%s got %v: want one distinct address in %s", p.id, res.IPs, subnet)
		}
		if gw := res.IPs[0].Gateway.String(); gw != "10.244.1.1" {
			t.Errorf("gateway = %s, want 10.244.1.1", gw)
		}
		if p.ip.String() == "10.244.1.1" || p.ip.String() == "10.244.1.0" {
			t.Errorf("handed out the network or gateway address %s", p.ip)
		}
		seen[p.ip.String()] = true
	}
	for _, from := range pods {
		if err := ping(from.ns, net.ParseIP("10.244.1.1")); err != nil {
			t.Errorf("%s -> gateway: %v", from.id, err)
		}
		for _, to := range pods {
			if from != to {
				if err := ping(from.ns, to.ip); err != nil {
					t.Errorf("%s -> %s (%s): %v", from.id, to.id, to.ip, err)
				}
			}
		}
	}
	// Pod-to-pod traffic is not NATed: the server sees the client's pod IP.
	serve(t, pods[0].ns, ":8080", "hello")
	got, err := dial(pods[1].ns, net.JoinHostPort(pods[0].ip.String(), "8080"))
	if err != nil || got != "hello from "+pods[1].ip.String() {
		t.Errorf("pod-b -> pod-a:8080 = %q, %v; want the client's own pod IP", got, err)
	}
	inside := inNS(t, pods[0].ns, "ip", "-o", "addr", "show", "eth0")
	if !strings.Contains(inside, pods[0].ip.String()+"/24") || !strings.Contains(inNS(t, pods[0].ns, "ip", "link", "show", "eth0"), "mtu 1500") {
		t.Errorf("eth0 in the pod: %s", inside)
	}
	if route := inNS(t, pods[0].ns, "ip", "route", "show", "default"); !strings.Contains(route, "via 10.244.1.1") {
		t.Errorf("default route = %q", route)
	}
	// CHECK passes on an intact attachment and fails when the route is gone.
	if err := n.do(func() error { return n.cni.CheckNetworkList(context.Background(), list, pods[0].rt) }); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	inNS(t, pods[0].ns, "ip", "route", "del", "default")
	if err := n.do(func() error { return n.cni.CheckNetworkList(context.Background(), list, pods[0].rt) }); err == nil {
		t.Errorf("CHECK passed with the default route removed")
	}
	for _, p := range pods {
		if err := n.del(list, p); err != nil {
			t.Errorf("DEL %s: %v", p.id, err)
		}
	}
	if v := n.vethsOnBridge(); len(v) != 0 {
		t.Errorf("veths left after DEL: %v", v)
	}
	if r := n.reservations(); len(r) != 0 {
		t.Errorf("reservations left after DEL: %v", r)
	}
}

func TestCNIDualStack(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	list := n.conflist(map[string]any{"subnet": []string{"10.244.1.0/24", "fd00:10:244:1::/64"},
		"clusterCIDR": []string{"10.244.0.0/16", "fd00:10:244::/56"}})
	a, b := n.newPod("a", nil), n.newPod("b", nil)
	ra := n.mustAdd(list, a)
	n.mustAdd(list, b)
	if len(ra.IPs) != 2 || ra.IPs[0].Address.IP.To4() == nil || ra.IPs[1].Address.IP.To4() != nil {
		t.Fatalf("dual-stack result IPs = %v, want IPv4 then IPv6", ra.IPs)
	}
	if len(ra.Routes) != 2 {
		t.Errorf("routes = %v, want a default route per family", ra.Routes)
	}
	serve(t, a.ns, "[::]:8080", "v6")
	// No DAD delay: the addresses work at once.
	got, err := dial(b.ns, net.JoinHostPort(ra.IPs[1].Address.IP.String(), "8080"))
	if err != nil || !strings.HasPrefix(got, "v6 from fd00:10:244:1:") {
		t.Errorf("b -> a over IPv6 = %q, %v", got, err)
	}
	if err := ping(a.ns, net.ParseIP("fd00:10:244:1::1")); err != nil {
		t.Errorf("ping the IPv6 gateway: %v", err)
	}
}

func TestCNIHostPort(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	// The node's own address lives on an uplink veth to a peer namespace
	// (this kernel has no dummy links).
	peer := newNS(t, "peer")
	n.sh("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer")
	n.sh("ip", "link", "set", "uplink-peer", "netns", peer)
	n.sh("ip", "addr", "add", "192.168.100.1/24", "dev", "uplink")
	n.sh("ip", "link", "set", "uplink", "up")
	inNS(t, peer, "ip", "addr", "add", "192.168.100.2/24", "dev", "uplink-peer")
	inNS(t, peer, "ip", "link", "set", "uplink-peer", "up")

	list := n.conflist(nil)
	caps := map[string]any{"portMappings": []map[string]any{
		{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
		{"hostPort": 8443, "containerPort": 80, "protocol": "tcp", "hostIP": "192.168.100.1"},
	}}
	web := n.newPod("web", caps)
	n.mustAdd(list, web)
	serve(t, web.ns, ":80", "web")

	tests := []struct {
		desc, from, addr, wantPrefix string
	}{
		{"from another host to the node's address", peer, "192.168.100.1:8080", "web from 192.168.100.2"},
		{"from another host to a hostIP mapping", peer, "192.168.100.1:8443", "web from 192.168.100.2"},
		{"from the node to its own address", n.ns, "192.168.100.1:8080", "web from "},
		{"from the node's localhost", n.ns, "127.0.0.1:8080", "web from 10.244.1.1"},
		{"from the pod to its own hostPort (hairpin)", web.ns, "192.168.100.1:8080", "web from 10.244.1.1"},
	}
	for _, tt := range tests {
		got, err := dial(tt.from, tt.addr)
		if err != nil || !strings.HasPrefix(got, tt.wantPrefix) {
			t.Errorf("%s: %s = %q, %v; want prefix %q", tt.desc, tt.addr, got, err, tt.wantPrefix)
		}
	}
	// The hostIP mapping answers only on that address.
	if got, err := dial(n.ns, "127.0.0.1:8443"); err == nil {
		t.Errorf("127.0.0.1:8443 answered %q: a hostIP mapping must not listen elsewhere", got)
	}
	if got := n.hostportRules(); got != 2 {
		t.Errorf("hostport rules = %d, want 2", got)
	}
	if err := n.do(func() error { return n.cni.CheckNetworkList(context.Background(), list, web.rt) }); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := n.del(list, web); err != nil {
		t.Fatal(err)
	}
	if got := n.hostportRules(); got != 0 {
		t.Errorf("hostport rules after DEL = %d", got)
	}
	if _, err := dial(peer, "192.168.100.1:8080"); err == nil {
		t.Errorf("hostPort still answers after DEL")
	}
}

func TestCNIDelIsIdempotentAndWorksWithoutNetns(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	list := n.conflist(map[string]any{"subnet": "10.244.1.0/29"}) // 5 addresses for pods
	var pods []*pod
	for i := range 5 {
		p := n.newPod(fmt.Sprint("p", i), map[string]any{"portMappings": []map[string]any{{"hostPort": 9000 + i, "containerPort": 80}}})
		n.mustAdd(list, p)
		pods = append(pods, p)
	}
	extra := n.newPod("extra", nil)
	_, err := n.add(list, extra)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater || !strings.Contains(cniErr.Msg, "10.244.1.0/29") {
		t.Fatalf("ADD into a full /29 = %v, want code 11 naming the subnet", err)
	}
	if v := n.vethsOnBridge(); len(v) != 5 {
		t.Fatalf("failed ADD left a veth: %v", v)
	}
	if err := n.do(func() error { return n.cni.GetStatusNetworkList(context.Background(), list) }); !errors.As(err, &cniErr) || cniErr.Code != 50 {
		t.Errorf("STATUS with a full pool = %v, want code 50", err)
	}

	// The runtime removed the netns before DEL (a crash, a reboot of the
	// pod): DEL must still free the address, the veth and the rules.
	gone := pods[2]
	if err := netns.Remove(gone.ns); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := n.del(list, gone); err != nil {
			t.Fatalf("DEL #%d without netns: %v", i+1, err)
		}
	}
	if r := n.reservations(); len(r) != 4 || slices.Contains(r, gone.ip.String()) {
		t.Fatalf("reservations after DEL = %v, want 4 without %s", r, gone.ip)
	}
	if got := n.hostportRules(); got != 4 {
		t.Errorf("hostport rules = %d, want 4", got)
	}
	if err := n.do(func() error { return n.cni.GetStatusNetworkList(context.Background(), list) }); err != nil {
		t.Errorf("STATUS with a free address: %v", err)
	}
	res := n.mustAdd(list, extra)
	if res.IPs[0].Address.IP.String() != gone.ip.String() {
		t.Errorf("the freed address %s was not handed out again (got %s)", gone.ip, res.IPs[0].Address.IP)
	}
	// DEL of something never added.
	if err := n.del(list, n.newPod("never", nil)); err != nil {
		t.Errorf("DEL of an unknown container: %v", err)
	}
}

func TestCNIGC(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	list := n.conflist(nil)
	var pods []*pod
	for i := range 4 {
		p := n.newPod(fmt.Sprint("gc", i), map[string]any{"portMappings": []map[string]any{{"hostPort": 7000 + i, "containerPort": 80}}})
		n.mustAdd(list, p)
		pods = append(pods, p)
	}
	keep := []types.GCAttachment{{ContainerID: "gc1", IfName: "eth0"}, {ContainerID: "gc3", IfName: "eth0"}}
	// A fresh libcni cache: the GC request reaches the plugin without
	// libcni's own DELs for cached attachments, so this tests the plugin.
	fresh := libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
	if err := n.do(func() error {
		return fresh.GCNetworkList(context.Background(), list, &libcni.GCArgs{ValidAttachments: keep})
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{pods[1].ip.String(), pods[3].ip.String()}
	slices.Sort(want)
	if r := n.reservations(); !slices.Equal(r, want) {
		t.Errorf("reservations after GC = %v, want %v", r, want)
	}
	if v := n.vethsOnBridge(); len(v) != 2 {
		t.Errorf("veths after GC = %v, want 2", v)
	}
	if got := n.hostportRules(); got != 2 {
		t.Errorf("hostport rules after GC = %d, want 2", got)
	}
	for _, p := range []*pod{pods[1], pods[3]} {
		if err := n.do(func() error { return n.cni.CheckNetworkList(context.Background(), list, p.rt) }); err != nil {
			t.Errorf("CHECK %s after GC: %v", p.id, err)
		}
	}
	// cnitool gc sends no list at all: everything goes.
	if err := n.do(func() error { return fresh.GCNetworkList(context.Background(), list, &libcni.GCArgs{}) }); err != nil {
		t.Fatal(err)
	}
	if r, v := n.reservations(), n.vethsOnBridge(); len(r)+len(v)+n.hostportRules() != 0 {
		t.Errorf("after GC with no valid attachments: reservations %v, veths %v, rules %d", r, v, n.hostportRules())
	}
}

func TestCNIParallelAddDel(t *testing.T) {
	t.Parallel()
	n := newNode(t) // a fresh node: the first ADDs race to create the bridge
	list := n.conflist(nil)
	const count = 20
	pods := make([]*pod, count)
	for i := range pods {
		pods[i] = n.newPod(fmt.Sprint("par", i), map[string]any{"portMappings": []map[string]any{{"hostPort": 10000 + i, "containerPort": 80}}})
	}
	run := func(op func(*pod) error) {
		var wg sync.WaitGroup
		errs := make([]error, count)
		for i, p := range pods {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = op(p) }()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	run(func(p *pod) error { _, err := n.add(list, p); return err })
	ips := map[string]bool{}
	for _, p := range pods {
		ips[p.ip.String()] = true
	}
	if len(ips) != count || len(n.reservations()) != count || len(n.vethsOnBridge()) != count || n.hostportRules() != count {
		t.Fatalf("after %d parallel ADDs: %d distinct IPs, %d reservations, %d veths, %d rules", count, len(ips), len(n.reservations()), len(n.vethsOnBridge()), n.hostportRules())
	}
	if out := n.sh("nft", "list", "chain", "inet", "cni_bridge", "postrouting"); strings.Count(out, "masquerade") != 3 {
		t.Errorf("postrouting holds duplicated static rules:\n%s", out)
	}
	run(func(p *pod) error { return n.del(list, p) })
	if r, v, h := n.reservations(), n.vethsOnBridge(), n.hostportRules(); len(r)+len(v)+h != 0 {
		t.Fatalf("after parallel DELs: reservations %v, veths %v, rules %d:\n%s", r, v, h,
			n.sh("nft", "-a", "list", "chain", "inet", "cni_bridge", "hostports"))
	}
}

func TestCNIRebootReclaimsAddresses(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	list := n.conflist(map[string]any{"subnet": "10.244.1.0/30"}) // a single address
	n.mustAdd(list, n.newPod("before-reboot", nil))
	// A reboot: the kernel state is gone and the boot ID changed, but the
	// data directory survived and no runtime ever sent DEL. Reservations of
	// the old boot are recognised by the boot ID recorded with them.
	dir := filepath.Join(n.dataDir, "pods", "ipam")
	oldBoot := "00000000-0000-0000-0000-000000000000"
	for _, f := range []string{filepath.Join(dir, "epoch"), filepath.Join(dir, "ips", "10.244.1.2")} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cur, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		data = []byte(strings.ReplaceAll(string(data), strings.TrimSpace(string(cur)), oldBoot))
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	after := n.newPod("after-reboot", nil)
	res, err := n.add(list, after)
	if err != nil || res.IPs[0].Address.IP.String() != "10.244.1.2" {
		t.Fatalf("ADD after reboot = %v, %v; want the old boot's address back", res, err)
	}
}

// TestCNIBadConfig drives the binary directly to see its exact output: the
// spec's error JSON on stdout, nothing else, and nothing left behind.
func TestCNIBadConfig(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	p := n.newPod("bad", nil)
	base := `{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge","dataDir":"` + n.dataDir + `"%s}`
	tests := []struct {
		desc, conf string
		code       int
		msg        string
	}{
		{"no subnet anywhere", fmt.Sprintf(base, ``), 7, "no pod subnet"},
		{"subnet not a CIDR", fmt.Sprintf(base, `,"subnet":"10.244.1.0"`), 7, `subnet "10.244.1.0" is not a CIDR`},
		{"subnet too small", fmt.Sprintf(base, `,"subnet":"10.0.0.0/31"`), 7, "too small"},
		{"two IPv4 subnets", fmt.Sprintf(base, `,"subnet":["10.0.0.0/24","10.0.1.0/24"]`), 7, "at most one IPv4"},
		{"subnet outside clusterCIDR", fmt.Sprintf(base, `,"subnet":"10.245.1.0/24","clusterCIDR":"10.244.0.0/16"`), 7, "not inside clusterCIDR"},
		{"mtu out of range", fmt.Sprintf(base, `,"subnet":"10.244.1.0/24","mtu":20`), 7, "mtu 20"},
		{"ipam section", fmt.Sprintf(base, `,"subnet":"10.244.1.0/24","ipam":{"type":"host-local"}`), 2, "does its own IPAM"},
		{"bad port mapping", fmt.Sprintf(base, `,"subnet":"10.244.1.0/24","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}`), 7, "hostPort 0"},
		{"ipRanges with rangeStart", fmt.Sprintf(base, `,"runtimeConfig":{"ipRanges":[[{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.10"}]]}`), 2, "rangeStart"},
		{"not JSON", `{"cniVersion":"1.1.0",`, 6, ""},
		{"unsupported version", `{"cniVersion":"9.9.9","name":"pods","type":"cni-bridge","subnet":"10.244.1.0/24"}`, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, "cni-bridge"))
			cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=bad", "CNI_NETNS=" + p.ns, "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
			cmd.Stdin = strings.NewReader(tt.conf)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			var out []byte
			err := n.do(func() error {
				var err error
				out, err = cmd.Output()
				return err
			})
			if err == nil {
				t.Fatalf("ADD succeeded: %s", out)
			}
			var got types.Error
			if jerr := jsonUnmarshalStrict(out, &got); jerr != nil {
				t.Fatalf("stdout is not the spec's error JSON: %v\n%s", jerr, out)
			}
			if int(got.Code) != tt.code || !strings.Contains(got.Msg, tt.msg) {
				t.Errorf("error = code %d %q, want code %d containing %q", got.Code, got.Msg, tt.code, tt.msg)
			}
		})
	}
	if v := n.vethsOnBridge(); len(v) != 0 {
		t.Errorf("bad configs left veths: %v", v)
	}
	if r := n.reservations(); len(r) != 0 {
		t.Errorf("bad configs left reservations: %v", r)
	}
	if out := inNS(t, n.ns, "ip", "-o", "link"); strings.Contains(out, "cni0") {
		t.Errorf("bad configs created the bridge")
	}
}
