package agent

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Route is a route the agent wants: another node's pod subnet via that
// node's InternalIP of the same family.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
	// Node is the node the route leads to (for logs only).
	Node string
}

// InstalledRoute is a unicast route found in the kernel's main table.
type InstalledRoute struct {
	Dst     netip.Prefix
	Gateway netip.Addr
	// Owned is true when the route carries RouteProtocol: only those are
	// ever replaced or deleted.
	Owned bool
	// Priority is the route's metric; a replace or delete names it so it
	// hits exactly this route.
	Priority int
}

// RouteChange replaces an owned route whose gateway is stale.
type RouteChange struct {
	Old InstalledRoute
	New Route
}

// RoutePlan is what it takes to get from the installed routes to the
// desired ones.
type RoutePlan struct {
	Add     []Route
	Replace []RouteChange
	Delete  []InstalledRoute
	// Conflicts are desired routes whose destination already has a route
	// the agent did not make (an admin's static route, another CNI): the
	// agent leaves those alone and does not install its own.
	Conflicts []Route
}

// Empty reports whether the plan changes nothing in the kernel.
func (p RoutePlan) Empty() bool {
	return len(p.Add) == 0 && len(p.Replace) == 0 && len(p.Delete) == 0
}

// PodCIDRs returns a node's pod subnets: spec.podCIDRs, or the older
// single spec.podCIDR. Unparsable entries are dropped (the API validates
// them, so this only guards against a hand-edited object).
func PodCIDRs(n *corev1.Node) []netip.Prefix {
	l := n.Spec.PodCIDRs
	if len(l) == 0 && n.Spec.PodCIDR != "" {
		l = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range l {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// internalIP returns the node's first InternalIP of the given family.
func internalIP(n *corev1.Node, v4 bool) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() == v4 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// DesiredRoutes returns, for every node but self, a route per podCIDR via
// the node's InternalIP of the same family (dual-stack: IPv4 subnet via the
// IPv4 address, IPv6 via IPv6). A podCIDR without an InternalIP of its
// family is skipped: the node is not reachable for it yet. A podCIDR equal
// to one of self's is skipped too: it is on the local bridge.
//
// When two nodes claim one podCIDR (a deleted node's subnet handed to a new
// node before the old object is gone), the most recently created node wins
// so the route follows the new owner (kind#2941), with the name as the tie
// break so every agent picks the same.
//
// The result is sorted by destination.
func DesiredRoutes(self string, nodes []*corev1.Node) []Route {
	var own []netip.Prefix
	for _, n := range nodes {
		if n.Name == self {
			own = PodCIDRs(n)
		}
	}
	// Newest first: the first claim of a destination wins.
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b *corev1.Node) int {
		if c := b.CreationTimestamp.Time.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	byDst := map[netip.Prefix]Route{}
	for _, n := range sorted {
		if n.Name == self {
			continue
		}
		for _, dst := range PodCIDRs(n) {
			if slices.Contains(own, dst) {
				continue
			}
			if _, taken := byDst[dst]; taken {
				continue
			}
			gw, ok := internalIP(n, dst.Addr().Is4())
			if !ok {
				continue
			}
			byDst[dst] = Route{Dst: dst, Gateway: gw, Node: n.Name}
		}
	}
	out := make([]Route, 0, len(byDst))
	for _, r := range byDst {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Route) int { return comparePrefix(a.Dst, b.Dst) })
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// PlanRoutes diffs desired against installed routes. For each desired
// destination: an owned route with the right gateway is kept; an owned
// route with another gateway is replaced (a new node reusing a podCIDR
// with another IP must not keep the old next hop); with no owned route, a
// foreign route to the same destination is a conflict and left alone;
// otherwise the route is added. Owned routes nobody wants any more (node
// deleted, podCIDR changed, or an extra owned route to a wanted
// destination) are deleted. Foreign routes are never touched.
func PlanRoutes(desired []Route, installed []InstalledRoute) RoutePlan {
	owned := map[netip.Prefix][]InstalledRoute{}
	foreign := map[netip.Prefix]bool{}
	for _, r := range installed {
		if r.Owned {
			owned[r.Dst] = append(owned[r.Dst], r)
		} else {
			foreign[r.Dst] = true
		}
	}
	var plan RoutePlan
	wanted := map[netip.Prefix]bool{}
	for _, d := range desired {
		wanted[d.Dst] = true
		have := owned[d.Dst]
		switch {
		case len(have) == 0 && foreign[d.Dst]:
			plan.Conflicts = append(plan.Conflicts, d)
		case len(have) == 0:
			plan.Add = append(plan.Add, d)
		default:
			keep := slices.IndexFunc(have, func(r InstalledRoute) bool { return r.Gateway == d.Gateway })
			if keep < 0 {
				keep = 0
				plan.Replace = append(plan.Replace, RouteChange{Old: have[0], New: d})
			}
			for i, r := range have {
				if i != keep {
					plan.Delete = append(plan.Delete, r)
				}
			}
		}
	}
	for _, r := range installed {
		if r.Owned && !wanted[r.Dst] {
			plan.Delete = append(plan.Delete, r)
		}
	}
	return plan
}
