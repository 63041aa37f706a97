package bridge

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates network namespaces)")
	}
}

func newNS(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ns")
	if err := netns.New(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Remove(path) })
	return path
}

func nsRun(t *testing.T, nsPath string, args ...string) string {
	t.Helper()
	out, _ := exec.Command("nsenter", append([]string{"--net=" + nsPath}, args...)...).CombinedOutput()
	return string(out)
}

// withStdout silences the result ADD prints.
func withStdout(t *testing.T, fn func() error) error {
	t.Helper()
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer devnull.Close()
	saved := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = saved }()
	return fn()
}

func TestAddRollsBackAtEveryStep(t *testing.T) {
	requireRoot(t)
	for _, step := range []string{"allocated", "veth", "container", "firewall"} {
		t.Run(step, func(t *testing.T) {
			node, podNS, dataDir := newNS(t), newNS(t), t.TempDir()
			conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge","subnet":"10.244.1.0/24","dataDir":%q,
				"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}}`, dataDir)
			args := &skel.CmdArgs{ContainerID: "c1", Netns: podNS, IfName: "eth0", StdinData: []byte(conf)}
			injected := errors.New("injected failure")
			p := &Plugin{Fault: func(s string) error {
				if s == step {
					return injected
				}
				return nil
			}}
			err := netns.Do(node, func() error { return withStdout(t, func() error { return p.Add(args) }) })
			if !errors.Is(err, injected) {
				t.Fatalf("Add = %v, want the injected failure", err)
			}
			if out := nsRun(t, node, "ip", "-o", "link", "show", "type", "veth"); strings.TrimSpace(out) != "" {
				t.Errorf("veth left in the node: %s", out)
			}
			if out := nsRun(t, podNS, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
				t.Errorf("eth0 left in the pod: %s", out)
			}
			if entries, _ := os.ReadDir(filepath.Join(dataDir, "pods", "ipam", "ips")); len(entries) != 0 {
				t.Errorf("%d reservations left", len(entries))
			}
			if out := nsRun(t, node, "nft", "list", "chain", "inet", "cni_bridge", "hostports"); strings.Contains(out, "dnat") {
				t.Errorf("hostPort rule left:\n%s", out)
			}
			// The same ADD without the fault then works: nothing half-made
			// is in its way.
			if err := netns.Do(node, func() error { return withStdout(t, func() error { return (&Plugin{}).Add(args) }) }); err != nil {
				t.Fatalf("ADD after rollback: %v", err)
			}
		})
	}
}

func TestNewBootReclaimsReservations(t *testing.T) {
	requireRoot(t)
	node, dataDir := newNS(t), t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge","subnet":"10.244.1.0/30","dataDir":%q}`, dataDir)
	add := func(p *Plugin, id string) error {
		args := &skel.CmdArgs{ContainerID: id, Netns: newNS(t), IfName: "eth0", StdinData: []byte(conf)}
		return netns.Do(node, func() error { return withStdout(t, func() error { return p.Add(args) }) })
	}
	if err := add(&Plugin{BootID: "boot-1"}, "a"); err != nil {
		t.Fatal(err)
	}
	if err := add(&Plugin{BootID: "boot-1"}, "b"); err == nil {
		t.Fatal("second ADD in a one-address subnet succeeded in the same boot")
	}
	if err := add(&Plugin{BootID: "boot-2"}, "b"); err != nil {
		t.Fatalf("ADD after a boot ID change: %v", err)
	}
}

func TestStatus(t *testing.T) {
	requireRoot(t)
	dataDir := t.TempDir()
	status := func(conf string) error {
		return (&Plugin{}).Status(&skel.CmdArgs{StdinData: []byte(conf)})
	}
	ok := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge","subnet":"10.244.1.0/24","dataDir":%q}`, dataDir)
	if err := status(ok); err != nil {
		t.Errorf("STATUS on a fresh node: %v", err)
	}
	// ipRanges mode before the first ADD: ready (the runtime supplies the subnet).
	if err := status(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge","dataDir":%q,"capabilities":{"ipRanges":true}}`, dataDir)); err != nil {
		t.Errorf("STATUS in ipRanges mode: %v", err)
	}
	var e *Error
	if err := status(`{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge"}`); !errors.As(err, &e) || e.Code != 7 {
		t.Errorf("STATUS without any subnet source = %v, want code 7", err)
	}
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o600)
	if err := status(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge","subnet":"10.244.1.0/24","dataDir":%q}`, filepath.Join(blocker, "sub"))); !errors.As(err, &e) || e.Code != errPluginNotAvailable {
		t.Errorf("STATUS with an unusable dataDir = %v, want code 50", err)
	}
}
