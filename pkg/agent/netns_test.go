package agent

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// Addresses of the test "node" uplink: the other nodes' InternalIPs are
// further hosts on these subnets.
const (
	uplink4 = "192.168.50.1/24"
	uplink6 = "fd00:50::1/64"
)

// newTestNetns makes a throwaway network namespace with an uplink (a veth
// pair: this kernel has no dummy links) holding uplink4 and uplink6, and
// returns a netlink handle bound to it. Nothing touches the root
// namespace: every object is made through the handle.
func newTestNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	path := filepath.Join(t.TempDir(), "netns")
	if err := netns.New(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(path); err != nil {
			t.Error(err)
		}
	})
	nsh, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)

	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0p"}); err != nil {
		t.Fatalf("create veth in the test netns: %v", err)
	}
	for _, name := range []string{"eth0", "eth0p"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{uplink4, uplink6} {
		// No duplicate address detection: a tentative IPv6 address would
		// make gateways on its subnet unreachable for a while.
		if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(t, a), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("add %s: %v", a, err)
		}
	}
	return h
}

// ipNet is a prefix keeping its host bits (an interface address).
func ipNet(t *testing.T, s string) *net.IPNet {
	t.Helper()
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addForeignRoute installs a route the agent did not make (proto static).
func addForeignRoute(t *testing.T, h *netlink.Handle, dst, gw string) {
	t.Helper()
	r := &netlink.Route{Dst: ipNet(t, dst), Gw: net.ParseIP(gw), Protocol: unix.RTPROT_STATIC}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("add foreign route %s via %s: %v", dst, gw, err)
	}
}

// kernelRoutes returns the routes to pod subnets in the test netns as
// "dst via gw" -> owned.
func kernelRoutes(t *testing.T, h *netlink.Handle) map[string]bool {
	t.Helper()
	l, err := (&RouteReconciler{Handle: h}).Installed()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range l {
		if r.Gateway.IsValid() { // skip connected and local routes
			out[r.Dst.String()+" via "+r.Gateway.String()] = r.Owned
		}
	}
	return out
}
