package bridge

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/skel"
)

// Status codes of the spec's STATUS verb.
const (
	errPluginNotAvailable = 50
)

// Status reports whether an ADD could be served now: the data directory is
// usable and no configured (or recorded) subnet is exhausted. It gets no
// runtimeConfig, so subnets that came from ipRanges are read from the
// network's record.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, false)
	if err != nil {
		return err
	}
	if len(c.Ranges) == 0 && !c.Capabilities["ipRanges"] {
		return configError("no pod subnet: set \"subnet\" in the network config or enable the ipRanges capability")
	}
	al, store, err := p.allocator(c)
	if err != nil {
		// Whatever the cause, for STATUS it means ADD cannot be served.
		return &Error{Code: errPluginNotAvailable, Err: err}
	}
	probe, err := os.CreateTemp(store.Dir(), ".status-*")
	if err != nil {
		return &Error{Code: errPluginNotAvailable, Err: fmt.Errorf("data directory %s is not writable: %w", filepath.Dir(store.Dir()), err)}
	}
	probe.Close()
	os.Remove(probe.Name())

	ranges, err := knownRanges(c)
	if err != nil {
		return &Error{Code: errPluginNotAvailable, Err: err}
	}
	for _, r := range ranges {
		used, err := al.Used(r)
		if err != nil {
			return &Error{Code: errPluginNotAvailable, Err: fmt.Errorf("count addresses in use in %s: %w", r.Subnet, err)}
		}
		if used >= r.Size() {
			return &Error{Code: errPluginNotAvailable, Err: fmt.Errorf("pod subnet %s is exhausted: all %d addresses are in use", r.Subnet, r.Size())}
		}
	}
	return nil
}
