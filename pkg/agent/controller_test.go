package agent

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newTestMetrics(t *testing.T) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestControllerNetns drives the whole controller: a fake API server with
// a few Nodes, the conflist in a temp dir, routes in a throwaway netns.
func TestControllerNetns(t *testing.T) {
	h := newTestNetns(t)
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	addForeignRoute(t, h, "10.99.0.0/24", "192.168.50.99")
	self := testNode("node-a", 0, nil, "192.168.50.1", "fd00:50::1") // no podCIDR yet
	client := fake.NewClientset(
		self,
		testNode("node-b", 0, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "192.168.50.2", "fd00:50::2"),
		testNode("node-c", 0, []string{"10.244.2.0/24"}, "192.168.50.3"),
	)
	nodes := client.CoreV1().Nodes()
	path := filepath.Join(t.TempDir(), "net.d", DefaultConflistName)
	m := newTestMetrics(t)
	opts := DefaultConflistOptions()
	opts.ClusterCIDRs = prefixes(t, "10.244.0.0/16", "fd00:10:244::/56")
	c, err := NewController(ControllerConfig{
		NodeName: "node-a", Client: client, ConflistPath: path, Conflist: opts,
		Routes: &RouteReconciler{Handle: h}, Resync: 50 * time.Millisecond, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	routesAre := func(want map[string]bool) func() bool {
		return func() bool { return maps.Equal(kernelRoutes(t, h), want) }
	}
	want := map[string]bool{
		"10.244.1.0/24 via 192.168.50.2":    true,
		"fd00:10:244:1::/64 via fd00:50::2": true,
		"10.244.2.0/24 via 192.168.50.3":    true,
		"10.99.0.0/24 via 192.168.50.99":    false,
	}
	waitFor(t, "routes to node-b and node-c", routesAre(want))

	// Without its own podCIDR the node gets no conflist and is not ready.
	waitFor(t, "a few syncs", func() bool { return testutil.ToFloat64(m.syncs.WithLabelValues(syncConflist)) >= 2 })
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("conflist written before the node has a podCIDR: %v", err)
	}
	if c.Ready() == nil {
		t.Error("ready without a conflist")
	}

	self.Spec.PodCIDRs = []string{"10.244.0.0/24", "fd00:10:244::/64"}
	self.Spec.PodCIDR = self.Spec.PodCIDRs[0]
	if _, err := nodes.Update(ctx, self, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the conflist", func() bool { _, err := os.Stat(path); return err == nil })
	wantConf, err := BuildConflist(opts, prefixes(t, "10.244.0.0/24", "fd00:10:244::/64"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(wantConf) {
		t.Errorf("conflist:\n%s\nwant:\n%s", got, wantConf)
	}
	waitFor(t, "readiness", func() bool { return c.Ready() == nil })

	// Resyncs with nothing changed leave the file alone.
	ino, mtime := fileID(t, path)
	syncs := testutil.ToFloat64(m.syncs.WithLabelValues(syncConflist))
	waitFor(t, "three resyncs", func() bool { return testutil.ToFloat64(m.syncs.WithLabelValues(syncConflist)) >= syncs+3 })
	if ino2, mtime2 := fileID(t, path); ino2 != ino || !mtime2.Equal(mtime) {
		t.Errorf("unchanged conflist rewritten on resync: inode %d -> %d, mtime %v -> %v", ino, ino2, mtime, mtime2)
	}
	if n := testutil.ToFloat64(m.conflistWrites); n != 1 {
		t.Errorf("conflist written %v times, want 1", n)
	}

	// node-b's IP changes: its routes are replaced.
	b, err := nodes.Get(ctx, "node-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.50.12"}, {Type: corev1.NodeInternalIP, Address: "fd00:50::12"}}
	if _, err := nodes.UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(want, "10.244.1.0/24 via 192.168.50.2")
	delete(want, "fd00:10:244:1::/64 via fd00:50::2")
	want["10.244.1.0/24 via 192.168.50.12"] = true
	want["fd00:10:244:1::/64 via fd00:50::12"] = true
	waitFor(t, "node-b's routes replaced", routesAre(want))

	// node-c is deleted: its route goes.
	if err := nodes.Delete(ctx, "node-c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(want, "10.244.2.0/24 via 192.168.50.3")
	waitFor(t, "node-c's route removed", routesAre(want))

	// A new node gets node-c's podCIDR and another IP.
	if _, err := nodes.Create(ctx, testNode("node-d", 1, []string{"10.244.2.0/24"}, "192.168.50.4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want["10.244.2.0/24 via 192.168.50.4"] = true
	waitFor(t, "node-d's route", routesAre(want))

	// Someone deletes the conflist: the next resync writes it again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the conflist rewritten", func() bool { _, err := os.Stat(path); return err == nil })

	if got := testutil.ToFloat64(m.routesManaged); got != 3 {
		t.Errorf("routes_managed = %v, want 3", got)
	}
}

func TestStandalone(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	path := filepath.Join(t.TempDir(), DefaultConflistName)
	s := &Standalone{
		ConflistPath: path, Conflist: DefaultConflistOptions(), PodCIDRs: prefixes(t, "10.88.0.0/16"),
		Resync: 20 * time.Millisecond, Metrics: newTestMetrics(t),
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "standalone readiness", func() bool { return s.Ready() == nil })
	want, _ := BuildConflist(DefaultConflistOptions(), prefixes(t, "10.88.0.0/16"))
	if got, _ := os.ReadFile(path); string(got) != string(want) {
		t.Errorf("conflist:\n%s\nwant:\n%s", got, want)
	}
	os.Remove(path)
	waitFor(t, "the conflist rewritten", func() bool { _, err := os.Stat(path); return err == nil })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}

	bad := &Standalone{ConflistPath: path, Conflist: DefaultConflistOptions(), PodCIDRs: prefixes(t, "10.88.0.0/31"), Resync: time.Second, Metrics: newTestMetrics(t)}
	if err := bad.Run(context.Background()); err == nil {
		t.Error("standalone with an unusable podCIDR: want an error")
	}
}
