package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// RouteProtocol is the rtm_protocol of every route the agent makes
// (`ip route` shows "proto 98"). It is how the agent recognises its own
// routes without keeping state, and why it never replaces or deletes a
// route someone else made. 98 is unassigned in iproute2's rt_protos.
const RouteProtocol netlink.RouteProtocol = 0x62

// RouteHandle is the part of *netlink.Handle the reconciler uses. Callers
// pass a handle bound to the namespace to manage: the host's in the agent,
// a throwaway namespace's in tests.
type RouteHandle interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

// RouteReconciler applies route plans through Handle in the main table.
type RouteReconciler struct {
	Handle RouteHandle
}

// ReconcileResult says what one reconcile found and did.
type ReconcileResult struct {
	Plan RoutePlan
	// Managed is the number of owned routes that match a desired route
	// after the reconcile.
	Managed int
}

// Installed lists the unicast routes of the main table, IPv4 and IPv6.
func (r *RouteReconciler) Installed() ([]InstalledRoute, error) {
	routes, err := r.Handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		// An interrupted dump may miss routes: deleting "stale" routes
		// from it could remove live ones, so the caller retries instead.
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out := make([]InstalledRoute, 0, len(routes))
	for _, nr := range routes {
		if nr.Type != unix.RTN_UNICAST || nr.Dst == nil {
			continue
		}
		dst, ok := ipNetToPrefix(nr.Dst)
		if !ok {
			continue
		}
		gw, _ := netip.AddrFromSlice(nr.Gw)
		out = append(out, InstalledRoute{
			Dst:      dst,
			Gateway:  gw.Unmap(),
			Owned:    nr.Protocol == RouteProtocol,
			Priority: nr.Priority,
		})
	}
	return out, nil
}

// Reconcile makes the owned routes of the main table match desired: it
// lists, plans (PlanRoutes) and applies. It applies every step it can and
// returns the failures joined, so one unreachable gateway does not hold
// back the routes to the other nodes.
// The result is nil only when the routes could not be listed.
func (r *RouteReconciler) Reconcile(ctx context.Context, desired []Route) (*ReconcileResult, error) {
	logger := klog.FromContext(ctx)
	installed, err := r.Installed()
	if err != nil {
		return nil, err
	}
	plan := PlanRoutes(desired, installed)
	res := &ReconcileResult{Plan: plan, Managed: len(desired) - len(plan.Conflicts)}
	var errs []error
	for _, old := range plan.Delete {
		if err := r.Handle.RouteDel(ownedRoute(old.Dst, old.Gateway, old.Priority)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s via %s: %w", old.Dst, old.Gateway, err))
			continue
		}
		logger.Info("Deleted route", "dst", old.Dst, "gateway", old.Gateway)
	}
	for _, c := range plan.Replace {
		if err := r.Handle.RouteReplace(ownedRoute(c.New.Dst, c.New.Gateway, c.Old.Priority)); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s via %s with via %s (node %s): %w", c.New.Dst, c.Old.Gateway, c.New.Gateway, c.New.Node, err))
			res.Managed--
			continue
		}
		logger.Info("Replaced route", "dst", c.New.Dst, "oldGateway", c.Old.Gateway, "gateway", c.New.Gateway, "node", c.New.Node)
	}
	for _, a := range plan.Add {
		// Add, not replace: should a foreign route to a destination appear
		// between the list and now, EEXIST keeps it intact.
		if err := r.Handle.RouteAdd(ownedRoute(a.Dst, a.Gateway, 0)); err != nil {
			errs = append(errs, fmt.Errorf("add route %s via %s (node %s): %w", a.Dst, a.Gateway, a.Node, err))
			res.Managed--
			continue
		}
		logger.Info("Added route", "dst", a.Dst, "gateway", a.Gateway, "node", a.Node)
	}
	for _, c := range plan.Conflicts {
		logger.V(2).Info("Not routing a pod subnet: a route the agent did not make already leads there", "dst", c.Dst, "gateway", c.Gateway, "node", c.Node)
	}
	return res, errors.Join(errs...)
}

// ownedRoute is a main-table route marked with RouteProtocol. The kernel
// matches a delete on the protocol too, so a delete never hits a foreign
// route that happens to share the destination.
func ownedRoute(dst netip.Prefix, gw netip.Addr, priority int) *netlink.Route {
	nr := &netlink.Route{
		Dst:      &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Protocol: RouteProtocol,
		Priority: priority,
		Table:    unix.RT_TABLE_MAIN,
	}
	if gw.IsValid() {
		nr.Gw = gw.AsSlice()
	}
	return nr
}

func ipNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}
