package bridge

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// hostVethName is the host end of an attachment's veth: derived from the
// attachment alone so DEL and GC find it without the pod's netns.
func hostVethName(a ipam.Attachment) string {
	sum := sha256.Sum256([]byte(a.ContainerID + "/" + a.IfName))
	return "cbr" + hex.EncodeToString(sum[:6])
}

// isHostVethName reports whether name has the shape of hostVethName.
func isHostVethName(name string) bool {
	if len(name) != 15 || !strings.HasPrefix(name, "cbr") {
		return false
	}
	_, err := hex.DecodeString(name[3:])
	return err == nil
}

// ensureBridge returns the bridge, creating it when absent. Concurrent first
// ADDs on a fresh node race here: EEXIST from a peer's create is success.
func ensureBridge(name string, mtu int) (*netlink.Bridge, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("look up bridge %s: %w", name, err)
		}
		// A fixed MAC keeps the gateway's address stable: a bridge without
		// one takes the lowest MAC of its ports, which changes as pods come
		// and go and leaves stale neighbour entries in every pod.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1, HardwareAddr: randomMAC(), Flags: net.FlagUp}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("look up bridge %s after creating it: %w", name, err)
		}
	}
	br, ok := link.(*netlink.Bridge)
	if !ok {
		return nil, &Error{Code: 7, Err: fmt.Errorf("interface %s exists but is a %s, not a bridge", name, link.Type())}
	}
	if br.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("set bridge %s up: %w", name, err)
		}
	}
	return br, nil
}

// ensureGateways puts each range's gateway on the bridge. EEXIST (already
// there, or a concurrent ADD put it there) is success, so no list is needed.
func ensureGateways(br netlink.Link, ranges []ipam.Range) error {
	for _, r := range ranges {
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(r.Gateway, r.Subnet.Bits()))}
		if r.Gateway.Is6() {
			// No duplicate address detection: the gateway must work at once,
			// not after DAD's ~1 s (and tentative addresses cannot be bound).
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add gateway %s to bridge %s: %w", addr.IPNet, br.Attrs().Name, err)
		}
	}
	return nil
}

// ensureForwarding turns on IP forwarding for the families in use (in the
// namespace the plugin runs in: the node's).
func ensureForwarding(ranges []ipam.Range) error {
	for _, r := range ranges {
		path := "/proc/sys/net/ipv4/ip_forward"
		if r.Subnet.Addr().Is6() {
			path = "/proc/sys/net/ipv6/conf/all/forwarding"
		}
		if err := ensureSysctl(path, "1"); err != nil {
			return err
		}
	}
	return nil
}

func ensureSysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s to %s: %w", strings.TrimPrefix(path, "/proc/sys/"), value, err)
	}
	return nil
}

// vethSpec is what createVeth builds.
type vethSpec struct {
	hostName      string
	containerName string
	mtu           int
	bridge        netlink.Link
	hairpin       bool
	netns         netns.NsHandle
}

// createVeth makes the pair in one request: host end enslaved to the bridge
// and up, container end created directly inside the pod's netns. A leftover
// host end of the same attachment (a retried ADD) is replaced.
func createVeth(s vethSpec) (host *netlink.Veth, err error) {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: s.hostName, MTU: s.mtu, MasterIndex: s.bridge.Attrs().Index,
			TxQLen: -1, Flags: net.FlagUp,
			// Chosen here so the result can name it without another lookup.
			HardwareAddr: randomMAC(),
		},
		PeerName:      s.containerName,
		PeerNamespace: netlink.NsFd(int(s.netns)),
		PeerMTU:       uint32(s.mtu),
		PeerTxQLen:    -1,
	}
	err = netlink.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		if derr := deleteLink(s.hostName); derr != nil {
			return nil, fmt.Errorf("replace stale veth %s: %w", s.hostName, derr)
		}
		err = netlink.LinkAdd(veth)
		if errors.Is(err, unix.EEXIST) {
			return nil, &Error{Code: 7, Err: fmt.Errorf("interface %s already exists in the container's network namespace", s.containerName)}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", s.hostName, s.containerName, err)
	}
	if s.hairpin {
		// Hairpin lets a pod reach itself through a service or hostPort
		// whose DNAT sends the packet back out of the port it came in on.
		if err := netlink.LinkSetHairpin(veth, true); err != nil {
			return veth, fmt.Errorf("set hairpin on %s: %w", s.hostName, err)
		}
	}
	return veth, nil
}

// deleteLink removes a link by name; absent is success.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// configureContainer sets addresses, the link state and routes of the pod's
// interface through a netlink handle bound to the pod's netns, so no OS
// thread of ours ever enters it.
func configureContainer(h *netlink.Handle, ifName string, ips []netip.Prefix, routes []route) (net.HardwareAddr, error) {
	link, err := h.LinkByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("look up %s in the container: %w", ifName, err)
	}
	for _, ip := range ips {
		addr := &netlink.Addr{IPNet: ipNet(ip)}
		if ip.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add %s to %s in the container: %w", ip, ifName, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up in the container: %w", ifName, err)
	}
	for _, r := range routes {
		nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.dst), Gw: r.gw.AsSlice()}
		if err := h.RouteReplace(nr); err != nil {
			return nil, fmt.Errorf("add route %s via %s in the container: %w", r.dst, r.gw, err)
		}
	}
	return link.Attrs().HardwareAddr, nil
}

// route is a route to put in the pod: dst via gw.
type route struct {
	dst netip.Prefix
	gw  netip.Addr
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT))
}

// randomMAC returns a random unicast, locally administered MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}
