package agent

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testNode builds a Node created age minutes after epoch with the given
// podCIDRs and InternalIPs.
func testNode(name string, age int, podCIDRs []string, internalIPs ...string) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec:       corev1.NodeSpec{PodCIDRs: podCIDRs},
	}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	for _, ip := range internalIPs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

func route(dst, gw, node string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Gateway: netip.MustParseAddr(gw), Node: node}
}

func TestDesiredRoutes(t *testing.T) {
	tests := []struct {
		desc  string
		nodes []*corev1.Node
		want  []Route
	}{
		{
			desc: "own node excluded",
			nodes: []*corev1.Node{
				testNode("self", 0, []string{"10.244.0.0/24"}, "192.168.1.10"),
				testNode("b", 0, []string{"10.244.1.0/24"}, "192.168.1.11"),
			},
			want: []Route{route("10.244.1.0/24", "192.168.1.11", "b")},
		},
		{
			desc: "node without InternalIP or podCIDR skipped",
			nodes: []*corev1.Node{
				testNode("self", 0, []string{"10.244.0.0/24"}, "192.168.1.10"),
				testNode("no-ip", 0, []string{"10.244.1.0/24"}),
				testNode("no-cidr", 0, nil, "192.168.1.12"),
				testNode("c", 0, []string{"10.244.3.0/24"}, "192.168.1.13"),
			},
			want: []Route{route("10.244.3.0/24", "192.168.1.13", "c")},
		},
		{
			desc: "dual stack: each family via the address of its family",
			nodes: []*corev1.Node{
				testNode("self", 0, []string{"10.244.0.0/24", "fd00:10:244::/64"}, "192.168.1.10", "fd00:1::10"),
				testNode("b", 0, []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, "fd00:1::11", "192.168.1.11"),
				// IPv4-only addresses: its IPv6 subnet is unreachable.
				testNode("c", 0, []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, "192.168.1.12"),
			},
			want: []Route{
				route("10.244.1.0/24", "192.168.1.11", "b"),
				route("10.244.2.0/24", "192.168.1.12", "c"),
				route("fd00:10:244:1::/64", "fd00:1::11", "b"),
			},
		},
		{
			desc: "legacy spec.podCIDR only, and an IPv4-mapped InternalIP",
			nodes: []*corev1.Node{
				func() *corev1.Node {
					n := testNode("b", 0, nil, "::ffff:192.168.1.11")
					n.Spec.PodCIDR = "10.244.1.0/24"
					return n
				}(),
			},
			want: []Route{route("10.244.1.0/24", "192.168.1.11", "b")},
		},
		{
			desc: "podCIDR reused by a new node with a new IP while the old object lingers: the newer node wins",
			nodes: []*corev1.Node{
				testNode("old", 0, []string{"10.244.1.0/24"}, "192.168.1.11"),
				testNode("new", 5, []string{"10.244.1.0/24"}, "192.168.1.21"),
			},
			want: []Route{route("10.244.1.0/24", "192.168.1.21", "new")},
		},
		{
			desc: "a stale node claiming our own podCIDR is not routed away",
			nodes: []*corev1.Node{
				testNode("self", 0, []string{"10.244.0.0/24"}, "192.168.1.10"),
				testNode("stale", 9, []string{"10.244.0.0/24"}, "192.168.1.99"),
			},
			want: []Route{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := DesiredRoutes("self", tc.nodes)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("DesiredRoutes (-want +got):\n%s", diff)
			}
		})
	}
}

func installed(dst, gw string, owned bool) InstalledRoute {
	r := InstalledRoute{Dst: netip.MustParsePrefix(dst), Owned: owned}
	if gw != "" {
		r.Gateway = netip.MustParseAddr(gw)
	}
	return r
}

func TestPlanRoutes(t *testing.T) {
	b := route("10.244.1.0/24", "192.168.1.11", "b")
	bMoved := route("10.244.1.0/24", "192.168.1.21", "b2")
	c6 := route("fd00:10:244:2::/64", "fd00:1::12", "c")
	tests := []struct {
		desc      string
		desired   []Route
		installed []InstalledRoute
		want      RoutePlan
	}{
		{
			desc:    "missing routes are added",
			desired: []Route{b, c6},
			installed: []InstalledRoute{
				installed("192.168.1.0/24", "", false), // connected route
			},
			want: RoutePlan{Add: []Route{b, c6}},
		},
		{
			desc:      "an owned route with the right gateway is kept",
			desired:   []Route{b},
			installed: []InstalledRoute{installed("10.244.1.0/24", "192.168.1.11", true)},
			want:      RoutePlan{},
		},
		{
			desc:      "podCIDR reused by a node with another IP: replaced, not only added",
			desired:   []Route{bMoved},
			installed: []InstalledRoute{installed("10.244.1.0/24", "192.168.1.11", true)},
			want:      RoutePlan{Replace: []RouteChange{{Old: installed("10.244.1.0/24", "192.168.1.11", true), New: bMoved}}},
		},
		{
			desc:    "owned routes nobody wants are deleted, foreign ones untouched",
			desired: nil,
			installed: []InstalledRoute{
				installed("10.244.1.0/24", "192.168.1.11", true),
				installed("fd00:10:244:2::/64", "fd00:1::12", true),
				installed("10.99.0.0/16", "192.168.1.1", false),
				installed("0.0.0.0/0", "192.168.1.1", false),
			},
			want: RoutePlan{Delete: []InstalledRoute{
				installed("10.244.1.0/24", "192.168.1.11", true),
				installed("fd00:10:244:2::/64", "fd00:1::12", true),
			}},
		},
		{
			desc:      "a foreign route to a wanted destination is a conflict, left alone",
			desired:   []Route{b},
			installed: []InstalledRoute{installed("10.244.1.0/24", "10.0.0.1", false)},
			want:      RoutePlan{Conflicts: []Route{b}},
		},
		{
			desc:    "two owned routes to one destination: the right one kept, the extra deleted",
			desired: []Route{b},
			installed: []InstalledRoute{
				{Dst: b.Dst, Gateway: netip.MustParseAddr("192.168.1.99"), Owned: true, Priority: 10},
				installed("10.244.1.0/24", "192.168.1.11", true),
			},
			want: RoutePlan{Delete: []InstalledRoute{{Dst: b.Dst, Gateway: netip.MustParseAddr("192.168.1.99"), Owned: true, Priority: 10}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := PlanRoutes(tc.desired, tc.installed)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("PlanRoutes (-want +got):\n%s", diff)
			}
			if got.Empty() != (len(tc.want.Add)+len(tc.want.Replace)+len(tc.want.Delete) == 0) {
				t.Errorf("Empty() = %v", got.Empty())
			}
			for _, d := range got.Delete {
				if !d.Owned || slices.ContainsFunc(tc.installed, func(r InstalledRoute) bool { return r == d && !r.Owned }) {
					t.Errorf("plan deletes a foreign route %+v", d)
				}
			}
		})
	}
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func netipAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
