package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// Plugin holds the verbs' dependencies. The zero value is the production
// plugin.
type Plugin struct {
	// BootID overrides /proc/sys/kernel/random/boot_id (tests simulate a
	// reboot with it).
	BootID string
	// Fault, when set, is called at named steps of ADD ("allocated",
	// "veth", "container", "firewall"); an error it returns fails the ADD
	// there, so tests can prove the rollback.
	Fault func(step string) error
}

// Funcs returns the verbs in skel's form; each turns its error into the
// spec's error JSON.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:    func(a *skel.CmdArgs) error { return toCNI(p.Add(a)) },
		Del:    func(a *skel.CmdArgs) error { return toCNI(p.Del(a)) },
		Check:  func(a *skel.CmdArgs) error { return toCNI(p.Check(a)) },
		Status: func(a *skel.CmdArgs) error { return toCNI(p.Status(a)) },
		GC:     func(a *skel.CmdArgs) error { return toCNI(p.GC(a)) },
	}
}

func (p *Plugin) fault(step string) error {
	if p.Fault == nil {
		return nil
	}
	return p.Fault(step)
}

func (p *Plugin) bootID() (string, error) {
	if p.BootID != "" {
		return p.BootID, nil
	}
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot ID: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// networkDir is where one network keeps its state.
func networkDir(c *Config) string { return filepath.Join(c.DataDir, c.Name) }

// allocator opens the network's IPAM store.
func (p *Plugin) allocator(c *Config) (*ipam.Allocator, *ipam.DiskStore, error) {
	boot, err := p.bootID()
	if err != nil {
		return nil, nil, err
	}
	store, err := ipam.NewDiskStore(filepath.Join(networkDir(c), "ipam"))
	if err != nil {
		return nil, nil, withCode(5, fmt.Errorf("data directory %s is unusable: %w", c.DataDir, err))
	}
	return &ipam.Allocator{Store: store, BootID: boot}, store, nil
}

func attachmentOf(args *skel.CmdArgs) ipam.Attachment {
	return ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

// subnetsFile records the subnets a network handed addresses from, so
// STATUS and GC (which get no runtimeConfig) know them when they came
// from the ipRanges capability.
func subnetsFile(c *Config) string { return filepath.Join(networkDir(c), "subnets.json") }

func recordSubnets(c *Config) error {
	want := make([]string, len(c.Ranges))
	for i, r := range c.Ranges {
		want[i] = r.Subnet.String()
	}
	data, _ := json.Marshal(want)
	if cur, err := os.ReadFile(subnetsFile(c)); err == nil && string(cur) == string(data) {
		return nil
	}
	tmp := subnetsFile(c) + ".tmp" + fmt.Sprint(os.Getpid())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, subnetsFile(c))
}

// knownRanges are the ranges of the config, else the recorded ones.
func knownRanges(c *Config) ([]ipam.Range, error) {
	if len(c.Ranges) > 0 {
		return c.Ranges, nil
	}
	data, err := os.ReadFile(subnetsFile(c))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var subnets []string
	if err := json.Unmarshal(data, &subnets); err != nil {
		return nil, fmt.Errorf("read %s: %w", subnetsFile(c), err)
	}
	var out []ipam.Range
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subnetsFile(c), err)
		}
		r, err := ipam.NewRange(p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// undoStack runs cleanups in reverse order, all of them, joining failures.
type undoStack []struct {
	what string
	fn   func() error
}

func (u *undoStack) push(what string, fn func() error) {
	*u = append(*u, struct {
		what string
		fn   func() error
	}{what, fn})
}

func (u undoStack) run() error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", u[i].what, err))
		}
	}
	return errors.Join(errs...)
}
