// Command cni benchmarks CNI ADD+DEL latency of cni-bridge against the
// reference chain (bridge + host-local + portmap from Debian's
// containernetworking-plugins) in the same run, through libcni, the client
// every runtime uses. Rounds are interleaved so both see the same machine
// state. Each implementation gets its own throwaway node namespace; nothing
// touches the root network namespace.
//
//	go run ./hack/bench/cni -rounds 50
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

type impl struct {
	name   string
	nodeNS string
	list   *libcni.NetworkConfigList
	cni    *libcni.CNIConfig
	add    []time.Duration
	del    []time.Duration
	addDel []time.Duration
}

func main() {
	rounds := flag.Int("rounds", 50, "ADD+DEL rounds per implementation (interleaved)")
	refDir := flag.String("reference-dir", "/usr/lib/cni", "directory of the reference plugins")
	flag.Parse()
	if err := run(*rounds, *refDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(rounds int, refDir string) error {
	work, err := os.MkdirTemp("", "cni-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	binDir := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/cni-bridge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build cni-bridge: %w", err)
	}
	portMap := map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}

	ours := map[string]any{"cniVersion": "1.1.0", "name": "bench", "plugins": []any{map[string]any{
		"type": "cni-bridge", "bridge": "cni0", "subnet": "10.244.1.0/24", "isDefaultGateway": true, "ipMasq": true,
		"clusterCIDR": "10.244.0.0/16", "mtu": 1500, "hairpinMode": true, "dataDir": filepath.Join(work, "data"),
		"capabilities": map[string]bool{"portMappings": true},
	}}}
	ref := map[string]any{"cniVersion": "1.0.0", "name": "bench", "plugins": []any{
		map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "ipMasq": true,
			"hairpinMode": true, "mtu": 1500,
			"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": "10.244.1.0/24"}}},
				"dataDir": filepath.Join(work, "host-local")}},
		map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
	}}
	impls := []*impl{
		{name: "cni-bridge", cni: libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(work, "cache-ours"), nil)},
		{name: "reference (bridge+host-local+portmap)", cni: libcni.NewCNIConfigWithCacheDir([]string{refDir}, filepath.Join(work, "cache-ref"), nil)},
	}
	for i, conf := range []map[string]any{ours, ref} {
		raw, _ := json.Marshal(conf)
		if impls[i].list, err = libcni.NetworkConfFromBytes(raw); err != nil {
			return err
		}
		impls[i].nodeNS = filepath.Join(work, fmt.Sprintf("node%d", i))
		if err := netns.New(impls[i].nodeNS); err != nil {
			return err
		}
		defer netns.Remove(impls[i].nodeNS)
	}

	podNS := filepath.Join(work, "pod")
	ctx := context.Background()
	// One warm-up round each (page cache, first bridge creation), then the
	// measured rounds.
	for round := -1; round < rounds; round++ {
		for _, im := range impls {
			if err := netns.New(podNS); err != nil {
				return err
			}
			rt := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench-%d", round+1), NetNS: podNS, IfName: "eth0", CapabilityArgs: portMap}
			var tAdd, tDel time.Duration
			err := netns.Do(im.nodeNS, func() error {
				start := time.Now()
				if _, err := im.cni.AddNetworkList(ctx, im.list, rt); err != nil {
					return fmt.Errorf("%s ADD: %w", im.name, err)
				}
				mid := time.Now()
				if err := im.cni.DelNetworkList(ctx, im.list, rt); err != nil {
					return fmt.Errorf("%s DEL: %w", im.name, err)
				}
				tAdd, tDel = mid.Sub(start), time.Since(mid)
				return nil
			})
			netns.Remove(podNS)
			if err != nil {
				return err
			}
			if round >= 0 {
				im.add = append(im.add, tAdd)
				im.del = append(im.del, tDel)
				im.addDel = append(im.addDel, tAdd+tDel)
			}
		}
	}

	fmt.Printf("CNI ADD+DEL through libcni, %d interleaved rounds, one hostPort mapping each\n", rounds)
	fmt.Printf("%-40s %10s %10s %10s %10s %10s %10s\n", "implementation", "ADD p50", "ADD p90", "DEL p50", "DEL p90", "A+D p50", "A+D p90")
	for _, im := range impls {
		fmt.Printf("%-40s %10s %10s %10s %10s %10s %10s\n", im.name,
			pct(im.add, 50), pct(im.add, 90), pct(im.del, 50), pct(im.del, 90), pct(im.addDel, 50), pct(im.addDel, 90))
	}
	ratio := float64(pct(impls[0].addDel, 50)) / float64(pct(impls[1].addDel, 50))
	fmt.Printf("ratio cni-bridge/reference, ADD+DEL p50: %.2fx (target <= 0.5x)\n", ratio)
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(100 * time.Microsecond)
}
