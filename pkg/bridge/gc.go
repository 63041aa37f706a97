package bridge

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// GC releases every address, hostPort rule and host veth of this network
// whose attachment is not in cni.dev/valid-attachments (a missing list means
// none is valid). It keeps going on errors and returns them together.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, false)
	if err != nil {
		return err
	}
	valid := c.validAttachments()
	var errs []error

	al, _, err := p.allocator(c)
	if err == nil {
		_, err = al.GC(valid)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("release addresses: %w", err))
	}

	fw, err := openFirewall()
	if err == nil {
		err = fw.deleteAttachmentRules(c.Name, func(a ipam.Attachment) bool { return !valid[a] })
		fw.close()
	}
	if err != nil {
		errs = append(errs, err)
	}

	if err := gcVeths(c.Bridge, valid); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// gcVeths deletes host veths on the bridge that carry our naming scheme but
// belong to no valid attachment. The bridge may be shared, so links named
// otherwise are left alone.
func gcVeths(bridge string, valid map[ipam.Attachment]bool) error {
	br, err := netlink.LinkByName(bridge)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", bridge, err)
	}
	keep := make(map[string]bool, len(valid))
	for a := range valid {
		keep[hostVethName(a)] = true
	}
	// An interrupted dump (links changed meanwhile) may miss some: list
	// again; after that, work with what it gave (only listed links are
	// deleted, so a miss leaves a stale veth for the next GC, never more).
	links, err := netlink.LinkList()
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		links, err = netlink.LinkList()
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		attrs := l.Attrs()
		if attrs.MasterIndex != br.Attrs().Index || l.Type() != "veth" || !isHostVethName(attrs.Name) || keep[attrs.Name] {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete stale veth %s: %w", attrs.Name, err))
		}
	}
	return errors.Join(errs...)
}
