package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2/ktesting"
)

func TestServer(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.observeSync(syncRoutes, errors.New("boom"))
	m.observeRoutes(ReconcileResult{Managed: 2})

	var ready atomic.Bool
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, Handler(func() error {
			if !ready.Load() {
				return errors.New("informer not synced")
			}
			return nil
		}, reg))
	}()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + l.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	tests := []struct {
		desc     string
		ready    bool
		path     string
		wantCode int
		wantBody []string
	}{
		{desc: "healthz", path: "/healthz", wantCode: 200, wantBody: []string{"ok"}},
		{desc: "not ready", path: "/readyz", wantCode: 503, wantBody: []string{"informer not synced"}},
		{desc: "ready", ready: true, path: "/readyz", wantCode: 200, wantBody: []string{"ok"}},
		{desc: "metrics", path: "/metrics", wantCode: 200, wantBody: []string{
			`cni_bridge_agent_syncs_total{kind="routes"} 1`,
			`cni_bridge_agent_sync_errors_total{kind="routes"} 1`,
			`cni_bridge_agent_routes_managed 2`,
			`cni_bridge_agent_conflist_writes_total 0`,
		}},
	}
	for _, tc := range tests {
		ready.Store(tc.ready)
		code, body := get(tc.path)
		if code != tc.wantCode {
			t.Errorf("%s: GET %s = %d, want %d", tc.desc, tc.path, code, tc.wantCode)
		}
		for _, w := range tc.wantBody {
			if !strings.Contains(body, w) {
				t.Errorf("%s: GET %s body lacks %q:\n%s", tc.desc, tc.path, w, body)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		desc    string
		change  func(*Options)
		wantErr string
	}{
		{desc: "defaults", change: func(*Options) {}},
		{desc: "dual-stack cluster CIDR", change: func(o *Options) { o.ClusterCIDR = "10.244.0.0/16,fd00:10:244::/56" }},
		{desc: "bad cluster CIDR", change: func(o *Options) { o.ClusterCIDR = "10.244.0.0" }, wantErr: "--cluster-cidr"},
		{desc: "conf name with a slash", change: func(o *Options) { o.ConflistName = "a/b.conflist" }, wantErr: "--cni-conf-name"},
		{desc: "zero resync", change: func(o *Options) { o.Resync = 0 }, wantErr: "--resync"},
		{desc: "cniVersion 1.0.0", change: func(o *Options) { o.CNIVersion = "1.0.0" }},
		{desc: "unknown cniVersion", change: func(o *Options) { o.CNIVersion = "1.2.0" }, wantErr: "--cni-version"},
	}
	for _, tc := range tests {
		o := DefaultOptions()
		tc.change(&o)
		_, err := o.conflistOptions()
		if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want one containing %q", tc.desc, err, tc.wantErr)
		}
	}
	if o := DefaultOptions(); o.MetricsAddress != ":9105" || o.Resync.Seconds() != 30 || o.Standalone() {
		t.Errorf("unexpected defaults %+v", o)
	}
}

// TestRunStandalone runs the agent's entry point without an API server.
func TestRunStandalone(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	o := DefaultOptions()
	o.CNIConfDir = t.TempDir()
	o.PodCIDR = "10.88.0.0/16"
	o.MetricsAddress = "127.0.0.1:0"
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, nil, nil) }()
	path := filepath.Join(o.CNIConfDir, o.ConflistName)
	waitFor(t, "the standalone conflist", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), `"subnet": "10.88.0.0/16"`)
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	o.PodCIDR = ""
	if err := Run(context.Background(), o, nil, nil); err == nil {
		t.Error("Run without --pod-cidr, client or netlink handle: want an error")
	}
}
