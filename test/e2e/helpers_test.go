package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// binDir holds the binaries built once for the whole package by TestMain.
var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: skipping, needs root (creates network namespaces)")
		os.Exit(m.Run()) // every test skips itself
	}
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	// Every binary of the project (cri-shim finds its monitor and pause
	// next to itself; libcni finds cni-bridge here), and the test images.
	for _, cmd := range [][]string{
		{"../../hack/build.sh", binDir},
		{"go", "build", "-o", binDir, "../../hack/testimages", "../../hack/leakcheck"},
	} {
		c := exec.Command(cmd[0], cmd[1:]...)
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
			os.RemoveAll(binDir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if err := stopSharedRuntime(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: shared runtime:", err)
		code = 1
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

var nsCounter atomic.Int64

// newNS creates a pinned network namespace removed when the test ends.
func newNS(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d", name, nsCounter.Add(1)))
	if err := netns.New(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(path); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	return path
}

// inNS runs a shell command inside the namespace (short commands only; see
// NOTES.md on ip netns exec).
func inNS(t *testing.T, nsPath string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + nsPath}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// node is a simulated node: a network namespace in which the plugin runs,
// with its own data directory and libcni result cache.
type node struct {
	t       *testing.T
	ns      string
	dataDir string
	cni     *libcni.CNIConfig
}

func newNode(t *testing.T) *node {
	requireRoot(t)
	n := &node{t: t, ns: newNS(t, "node"), dataDir: t.TempDir()}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
	return n
}

// conflist returns the network config of the shape with the given
// overrides (a nil value deletes the key).
func (n *node) conflist(overrides map[string]any) *libcni.NetworkConfigList {
	n.t.Helper()
	plugin := map[string]any{
		"type": "cni-bridge", "bridge": "cni0", "subnet": "10.244.1.0/24", "isDefaultGateway": true,
		"ipMasq": true, "clusterCIDR": "10.244.0.0/16", "mtu": 1500, "hairpinMode": true,
		"dataDir": n.dataDir, "capabilities": map[string]bool{"portMappings": true, "ipRanges": true},
	}
	for k, v := range overrides {
		if v == nil {
			delete(plugin, k)
		} else {
			plugin[k] = v
		}
	}
	raw, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "pods", "plugins": []any{plugin}})
	list, err := libcni.NetworkConfFromBytes(raw)
	if err != nil {
		n.t.Fatal(err)
	}
	return list
}

// do runs fn inside the node's namespace, so the plugin processes libcni
// starts from it run there too.
func (n *node) do(fn func() error) error {
	return netns.Do(n.ns, fn)
}

type libcniResult = current.Result

func parseResult(r types.Result) (*current.Result, error) { return current.NewResultFromResult(r) }

type pod struct {
	id, ns string
	ip     net.IP
	rt     *libcni.RuntimeConf
}

func (n *node) newPod(id string, caps map[string]any) *pod {
	p := &pod{id: id, ns: newNS(n.t, "pod")}
	p.rt = &libcni.RuntimeConf{ContainerID: id, NetNS: p.ns, IfName: "eth0", CapabilityArgs: caps}
	return p
}

func (n *node) add(list *libcni.NetworkConfigList, p *pod) (*libcniResult, error) {
	var res *libcniResult
	err := n.do(func() error {
		r, err := n.cni.AddNetworkList(context.Background(), list, p.rt)
		if err != nil {
			return err
		}
		res, err = parseResult(r)
		return err
	})
	if err == nil && len(res.IPs) > 0 {
		p.ip = res.IPs[0].Address.IP
	}
	return res, err
}

func (n *node) mustAdd(list *libcni.NetworkConfigList, p *pod) *libcniResult {
	n.t.Helper()
	res, err := n.add(list, p)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", p.id, err)
	}
	return res
}

func (n *node) del(list *libcni.NetworkConfigList, p *pod) error {
	return n.do(func() error { return n.cni.DelNetworkList(context.Background(), list, p.rt) })
}

// sh runs a command in the node's namespace.
func (n *node) sh(args ...string) string { return inNS(n.t, n.ns, args...) }

// vethsOnBridge lists the host veths the plugin made in the node.
func (n *node) vethsOnBridge() []string {
	out, err := exec.Command("nsenter", "--net="+n.ns, "ip", "-o", "link", "show", "type", "veth").CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip link: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// reservations lists the address files of the network's IPAM store.
func (n *node) reservations() []string {
	entries, err := os.ReadDir(filepath.Join(n.dataDir, "pods", "ipam", "ips"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// hostportRules counts DNAT rules in the plugin's table.
func (n *node) hostportRules() int {
	out, err := exec.Command("nsenter", "--net="+n.ns, "nft", "list", "chain", "inet", "cni_bridge", "hostports").CombinedOutput()
	if err != nil {
		return 0 // no table, no rules
	}
	return strings.Count(string(out), "dnat")
}

// ping sends one ICMP echo from inside nsPath to dst and waits for the reply.
func ping(nsPath string, dst net.IP) error {
	return netns.Do(nsPath, func() error {
		network, proto, typ := "ip4:icmp", 1, icmp.Type(ipv4.ICMPTypeEcho)
		if dst.To4() == nil {
			network, proto, typ = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest
		}
		c, err := icmp.ListenPacket(network, "")
		if err != nil {
			return err
		}
		defer c.Close()
		msg, _ := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0x1234, Seq: 1, Data: []byte("cni-bridge")}}).Marshal(nil)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
			return fmt.Errorf("ping %s: %w", dst, err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("ping %s: no reply: %w", dst, err)
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err == nil && (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) {
				return nil
			}
		}
	})
}

// serve starts a TCP server inside nsPath that answers each connection with
// reply followed by the client's address as it saw it.
func serve(t *testing.T, nsPath, addr, reply string) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(nsPath, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s from %s\n", reply, host)
			c.Close()
		}
	}()
}

// dial connects from inside nsPath and returns what the server said.
func dial(nsPath, addr string) (string, error) {
	var out string
	err := netns.Do(nsPath, func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 256)
		n, _ := c.Read(buf)
		out = strings.TrimSpace(string(buf[:n]))
		return nil
	})
	return out, err
}
