package bridge

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Check verifies that what ADD made is still in place, against prevResult:
// the container interface with its addresses and routes, the host veth on
// the bridge, the address reservations and the hostPort rules.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, true)
	if err != nil {
		return err
	}
	if c.RawPrevResult == nil {
		return configError("CHECK needs prevResult in the network config")
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return &Error{Code: types.ErrDecodingFailure, Err: fmt.Errorf("parse prevResult: %w", err)}
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return &Error{Code: types.ErrDecodingFailure, Err: fmt.Errorf("convert prevResult: %w", err)}
	}
	a := attachmentOf(args)

	// Addresses the result says the container interface has.
	contIdx := slices.IndexFunc(prev.Interfaces, func(i *current.Interface) bool { return i.Name == args.IfName && i.Sandbox != "" })
	if contIdx < 0 {
		return fmt.Errorf("prevResult has no interface %s inside a sandbox", args.IfName)
	}
	var want []netip.Prefix
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface == contIdx {
			pfx, ok := prefixOf(ipc.Address.IP, ipc.Address.Mask)
			if !ok {
				return fmt.Errorf("prevResult has an invalid address %v", ipc.Address)
			}
			want = append(want, pfx)
		}
	}

	// The reservations still belong to this attachment.
	al, _, err := p.allocator(c)
	if err != nil {
		return err
	}
	held, err := al.Lookup(a)
	if err != nil {
		return err
	}
	for _, w := range want {
		if !slices.Contains(held, w.Addr()) {
			return fmt.Errorf("address %s of %s is not reserved for it (reserved: %v)", w.Addr(), args.ContainerID, held)
		}
	}

	// Host side.
	hostName := hostVethName(a)
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostName, err)
	}
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", c.Bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("host veth %s is not attached to bridge %s", hostName, c.Bridge)
	}

	// Container side.
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return &Error{Code: types.ErrUnknownContainer, Err: fmt.Errorf("open the container's network namespace %q: %w", args.Netns, err)}
	}
	defer podNS.Close()
	h, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(args.IfName)
	if err != nil {
		return fmt.Errorf("interface %s in the container: %w", args.IfName, err)
	}
	if mac := prev.Interfaces[contIdx].Mac; mac != "" && mac != link.Attrs().HardwareAddr.String() {
		return fmt.Errorf("interface %s has MAC %s, prevResult says %s", args.IfName, link.Attrs().HardwareAddr, mac)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", args.IfName, err)
	}
	for _, w := range want {
		if !slices.ContainsFunc(addrs, func(ad netlink.Addr) bool {
			got, ok := prefixOf(ad.IP, ad.Mask)
			return ok && got == w
		}) {
			return fmt.Errorf("address %s is missing from %s in the container", w, args.IfName)
		}
	}
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", args.IfName, err)
	}
	for _, r := range prev.Routes {
		dst, ok := prefixOf(r.Dst.IP, r.Dst.Mask)
		if !ok {
			return fmt.Errorf("prevResult has an invalid route %v", r.Dst)
		}
		if !slices.ContainsFunc(routes, func(got netlink.Route) bool { return routeMatches(got, dst, r.GW) }) {
			return fmt.Errorf("route %s via %s is missing in the container", dst, r.GW)
		}
	}

	// hostPort rules.
	if len(c.PortMappings) > 0 {
		fw, err := openFirewall()
		if err != nil {
			return err
		}
		defer fw.close()
		n, err := fw.countAttachmentRules(c.Name, a)
		if err != nil {
			return err
		}
		if wantRules := expectedRules(c.PortMappings, held); n != wantRules {
			return fmt.Errorf("%d hostPort rules for %s, want %d", n, args.ContainerID, wantRules)
		}
	}
	return nil
}

func expectedRules(mappings []portMapping, ips []netip.Addr) int {
	n := 0
	for _, m := range mappings {
		for _, ip := range ips {
			if !m.hostIP.IsValid() || m.hostIP.Is4() == ip.Is4() {
				n++
			}
		}
	}
	return n
}

func prefixOf(ip []byte, mask []byte) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	ones, bits := net.IPMask(mask).Size()
	if bits != addr.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addr, ones), true
}

func routeMatches(got netlink.Route, dst netip.Prefix, gw []byte) bool {
	var gotDst netip.Prefix
	if got.Dst == nil {
		gotDst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if dst.Addr().Is6() {
			gotDst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	} else {
		var ok bool
		if gotDst, ok = prefixOf(got.Dst.IP, got.Dst.Mask); !ok {
			return false
		}
	}
	if gotDst != dst {
		return false
	}
	if len(gw) == 0 {
		return true
	}
	g1, _ := netip.AddrFromSlice(gw)
	g2, _ := netip.AddrFromSlice(got.Gw)
	return g1.Unmap() == g2.Unmap()
}
