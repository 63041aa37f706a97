package agent

import (
	"maps"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2/ktesting"
)

func TestRouteReconcilerNetns(t *testing.T) {
	h := newTestNetns(t)
	_, ctx := ktesting.NewTestContext(t)
	rr := &RouteReconciler{Handle: h}

	// Left from a previous agent run: a route to a node since deleted, and
	// one to a node whose IP changed.
	for _, r := range []struct{ dst, gw string }{{"10.244.9.0/24", "192.168.50.9"}, {"10.244.1.0/24", "192.168.50.7"}} {
		if err := h.RouteAdd(ownedRoute(netipPrefix(r.dst), netipAddr(r.gw), 0)); err != nil {
			t.Fatal(err)
		}
	}
	// Routes someone else made: one elsewhere, one to a pod subnet.
	addForeignRoute(t, h, "10.99.0.0/24", "192.168.50.99")
	addForeignRoute(t, h, "10.244.5.0/24", "192.168.50.98")

	desired := []Route{
		route("10.244.1.0/24", "192.168.50.2", "b"),
		route("10.244.2.0/24", "192.168.50.3", "c"),
		route("fd00:10:244:2::/64", "fd00:50::3", "c"),
		route("10.244.5.0/24", "192.168.50.5", "e"), // conflicts with the foreign route
	}
	res, err := rr.Reconcile(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Add) != 2 || len(res.Plan.Replace) != 1 || len(res.Plan.Delete) != 1 || len(res.Plan.Conflicts) != 1 || res.Managed != 3 {
		t.Errorf("first reconcile: plan %+v, managed %d; want 2 adds, 1 replace, 1 delete, 1 conflict, 3 managed", res.Plan, res.Managed)
	}
	want := map[string]bool{
		"10.244.1.0/24 via 192.168.50.2":    true,
		"10.244.2.0/24 via 192.168.50.3":    true,
		"fd00:10:244:2::/64 via fd00:50::3": true,
		"10.99.0.0/24 via 192.168.50.99":    false,
		"10.244.5.0/24 via 192.168.50.98":   false,
	}
	if got := kernelRoutes(t, h); !maps.Equal(got, want) {
		t.Errorf("routes after the first reconcile:\n got %v\nwant %v", got, want)
	}
	// The routes carry the agent's protocol in the kernel (what `ip route`
	// shows as "proto 98").
	l, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(t, "10.244.2.0/24")}, netlink.RT_FILTER_DST)
	if err != nil || len(l) != 1 || l[0].Protocol != 0x62 || !l[0].Gw.Equal(net.ParseIP("192.168.50.3")) {
		t.Errorf("route to 10.244.2.0/24: %+v (%v), want one via 192.168.50.3 proto 0x62", l, err)
	}

	// Nothing changed: nothing to do.
	res, err = rr.Reconcile(ctx, desired)
	if err != nil || !res.Plan.Empty() {
		t.Errorf("second reconcile: plan %+v, err %v; want an empty plan", res.Plan, err)
	}

	// Someone deleted one of ours: it comes back.
	if err := h.RouteDel(ownedRoute(netipPrefix("10.244.2.0/24"), netipAddr("192.168.50.3"), 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := rr.Reconcile(ctx, desired); err != nil {
		t.Fatal(err)
	}
	if got := kernelRoutes(t, h); !maps.Equal(got, want) {
		t.Errorf("routes after repair:\n got %v\nwant %v", got, want)
	}

	// Every node gone: every owned route goes, the foreign ones stay.
	if _, err := rr.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	want = map[string]bool{"10.99.0.0/24 via 192.168.50.99": false, "10.244.5.0/24 via 192.168.50.98": false}
	if got := kernelRoutes(t, h); !maps.Equal(got, want) {
		t.Errorf("routes after removing every node:\n got %v\nwant %v", got, want)
	}

	// An unreachable gateway fails its route only.
	res, err = rr.Reconcile(ctx, []Route{
		route("10.244.7.0/24", "172.31.0.1", "far"),
		route("10.244.8.0/24", "192.168.50.8", "near"),
	})
	if err == nil {
		t.Error("want an error for a gateway with no route to it")
	}
	if res == nil || res.Managed != 1 {
		t.Errorf("result %+v, want 1 managed route", res)
	}
	if got := kernelRoutes(t, h); !got["10.244.8.0/24 via 192.168.50.8"] {
		t.Errorf("the route with a reachable gateway is missing: %v", got)
	}
}
