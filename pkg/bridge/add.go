package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// Add attaches the container to the network and prints the result. On any
// error everything it made (IPs, veth, rules) is removed again.
func (p *Plugin) Add(args *skel.CmdArgs) (err error) {
	c, err := ParseConfig(args.StdinData, true)
	if err != nil {
		return err
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return &Error{Code: types.ErrUnknownContainer, Err: fmt.Errorf("open the container's network namespace %q: %w", args.Netns, err)}
	}
	defer podNS.Close()

	al, store, err := p.allocator(c)
	if err != nil {
		return err
	}
	var undo undoStack
	defer func() {
		if err != nil {
			err = errors.Join(err, undo.run())
		}
	}()

	a := attachmentOf(args)
	addrs, err := al.Allocate(a, c.Ranges)
	if errors.Is(err, ipam.ErrExhausted) {
		return &Error{Code: types.ErrTryAgainLater, Err: fmt.Errorf("allocate an address for %s: %w", args.ContainerID, err)}
	}
	if err != nil {
		return fmt.Errorf("allocate an address for %s: %w", args.ContainerID, err)
	}
	undo.push("address reservation", func() error { return al.Release(a) })
	if len(c.Subnet) == 0 {
		if err := recordSubnets(c); err != nil {
			return fmt.Errorf("record subnets: %w", err)
		}
	}
	if err := p.fault("allocated"); err != nil {
		return err
	}

	br, err := ensureBridge(c.Bridge, c.MTU)
	if err != nil {
		return err
	}
	if err := ensureGateways(br, c.Ranges); err != nil {
		return err
	}
	if err := ensureForwarding(c.Ranges); err != nil {
		return err
	}
	if len(c.PortMappings) > 0 {
		// The OUTPUT DNAT of 127.0.0.1:hostPort sends a packet with a
		// loopback source out of the bridge; the kernel drops it as
		// martian unless route_localnet is on there.
		if err := ensureSysctl("/proc/sys/net/ipv4/conf/"+c.Bridge+"/route_localnet", "1"); err != nil {
			return err
		}
	}

	hostName := hostVethName(a)
	host, err := createVeth(vethSpec{hostName: hostName, containerName: args.IfName, mtu: c.MTU, bridge: br,
		hairpin: c.HairpinMode, netns: netns.NsHandle(podNS.Fd())})
	if host != nil {
		undo.push("veth "+hostName, func() error { return deleteLink(hostName) })
	}
	if err != nil {
		return err
	}
	if err := p.fault("veth"); err != nil {
		return err
	}

	ips := make([]netip.Prefix, len(addrs))
	var routes []route
	for i, r := range c.Ranges {
		ips[i] = netip.PrefixFrom(addrs[i], r.Subnet.Bits())
		switch {
		case c.IsDefaultGateway:
			routes = append(routes, route{dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0), gw: r.Gateway})
			if r.Gateway.Is4() {
				routes[len(routes)-1].dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			}
		case c.Cluster[i] != r.Subnet:
			routes = append(routes, route{dst: c.Cluster[i], gw: r.Gateway})
		}
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in the container's network namespace: %w", err)
	}
	defer h.Close()
	contMAC, err := configureContainer(h, args.IfName, ips, routes)
	if err != nil {
		return err
	}
	if err := p.fault("container"); err != nil {
		return err
	}

	fw, err := openFirewall()
	if err != nil {
		return err
	}
	defer fw.close()
	if err := fw.ensureBase(); err != nil {
		return err
	}
	lock := func() (func(), error) {
		if err := store.Lock(); err != nil {
			return nil, err
		}
		return func() { store.Unlock() }, nil
	}
	if err := fw.ensureStatic(c, lock); err != nil {
		return err
	}
	if len(c.PortMappings) > 0 {
		undo.push("hostPort rules", func() error {
			// Its own connection: the undo runs after fw is closed.
			f, err := openFirewall()
			if err != nil {
				return err
			}
			defer f.close()
			return f.deleteAttachmentRules(c.Name, func(got ipam.Attachment) bool { return got == a })
		})
		if _, err := fw.addHostports(c.Name, a, c.PortMappings, addrs); err != nil {
			return err
		}
	}
	if err := p.fault("firewall"); err != nil {
		return err
	}

	result := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: c.Bridge, Mac: br.Attrs().HardwareAddr.String()},
			{Name: hostName, Mac: host.Attrs().HardwareAddr.String()},
			{Name: args.IfName, Mac: contMAC.String(), Sandbox: args.Netns},
		},
		DNS: c.DNS,
	}
	for i, r := range c.Ranges {
		result.IPs = append(result.IPs, &current.IPConfig{
			Interface: current.Int(2),
			Address:   *ipNet(ips[i]),
			Gateway:   r.Gateway.AsSlice(),
		})
	}
	for _, rt := range routes {
		result.Routes = append(result.Routes, &types.Route{Dst: *ipNet(rt.dst), GW: net.IP(rt.gw.AsSlice())})
	}
	return types.PrintResult(result, c.CNIVersion)
}
