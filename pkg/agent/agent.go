package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/bridge"
)

// Options are the agent's command-line settings.
type Options struct {
	NodeName   string
	Kubeconfig string
	CNIConfDir string
	// ConflistName is the file name in CNIConfDir. libcni loads the
	// lexically first config, so the "10-" prefix puts it ahead of most.
	ConflistName string
	// ClusterCIDR and PodCIDR are comma-separated lists (one CIDR per
	// family). PodCIDR set means standalone mode.
	ClusterCIDR    string
	PodCIDR        string
	Bridge         string
	MTU            int
	DataDir        string
	Resync         time.Duration
	MetricsAddress string
	// CNIVersion is the conflist's cniVersion (agent.CNIVersions).
	CNIVersion string
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		CNIConfDir:     "/etc/cni/net.d",
		ConflistName:   DefaultConflistName,
		Bridge:         bridge.DefaultBridge,
		MTU:            bridge.DefaultMTU,
		DataDir:        bridge.DefaultDataDir,
		Resync:         30 * time.Second,
		MetricsAddress: ":9105",
		CNIVersion:     DefaultCNIVersion,
	}
}

// AddFlags registers the options on fs, with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "name of the Node this agent runs on (default: $NODE_NAME)")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig for running outside the cluster (default: in-cluster config)")
	fs.StringVar(&o.CNIConfDir, "cni-conf-dir", o.CNIConfDir, "directory to write the CNI config list into")
	fs.StringVar(&o.ConflistName, "cni-conf-name", o.ConflistName, "file name of the CNI config list")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "cluster pod CIDR(s), comma-separated, one per family: traffic leaving it is masqueraded (empty: the node's podCIDR)")
	fs.StringVar(&o.PodCIDR, "pod-cidr", o.PodCIDR, "standalone mode: this node's pod CIDR(s), comma-separated; no API server, no routes")
	fs.StringVar(&o.Bridge, "bridge", o.Bridge, "bridge name in the CNI config")
	fs.IntVar(&o.MTU, "mtu", o.MTU, "MTU of the bridge and pod interfaces in the CNI config")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "the plugin's state directory in the CNI config")
	fs.DurationVar(&o.Resync, "resync", o.Resync, "how often the CNI config and the routes are checked even without a change")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "host:port serving /healthz, /readyz and /metrics (empty: off)")
	fs.StringVar(&o.CNIVersion, "cni-version", o.CNIVersion, "cniVersion of the CNI config list: "+strings.Join(CNIVersions, " or ")+" (1.0.0 for runtimes with an older libcni, e.g. containerd 1.6)")
}

// Standalone reports whether the agent runs without an API server.
func (o Options) Standalone() bool { return strings.TrimSpace(o.PodCIDR) != "" }

func (o Options) conflistOptions() (ConflistOptions, error) {
	cluster, err := ParseCIDRs(strings.Split(o.ClusterCIDR, ","))
	if err != nil {
		return ConflistOptions{}, fmt.Errorf("--cluster-cidr: %w", err)
	}
	if o.ConflistName == "" || strings.ContainsRune(o.ConflistName, '/') {
		return ConflistOptions{}, fmt.Errorf("--cni-conf-name %q must be a plain file name", o.ConflistName)
	}
	if o.Resync <= 0 {
		return ConflistOptions{}, fmt.Errorf("--resync %v must be positive", o.Resync)
	}
	if !slices.Contains(CNIVersions, o.CNIVersion) {
		return ConflistOptions{}, fmt.Errorf("--cni-version %q: want one of %s", o.CNIVersion, strings.Join(CNIVersions, ", "))
	}
	return ConflistOptions{CNIVersion: o.CNIVersion, NetworkName: DefaultNetworkName, Bridge: o.Bridge, MTU: o.MTU, DataDir: o.DataDir, ClusterCIDRs: cluster}, nil
}

// Run runs the agent until ctx is done. In standalone mode client and
// routes are unused (may be nil); otherwise client talks to the API server
// and routes is the netlink handle of the host's network namespace.
func Run(ctx context.Context, o Options, client kubernetes.Interface, routes RouteHandle) error {
	logger := klog.FromContext(ctx)
	conf, err := o.conflistOptions()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	path := filepath.Join(o.CNIConfDir, o.ConflistName)

	var run func(context.Context) error
	var ready func() error
	if o.Standalone() {
		podCIDRs, err := ParseCIDRs(strings.Split(o.PodCIDR, ","))
		if err != nil {
			return fmt.Errorf("--pod-cidr: %w", err)
		}
		s := &Standalone{ConflistPath: path, Conflist: conf, PodCIDRs: podCIDRs, Resync: o.Resync, Metrics: m}
		run, ready = s.Run, s.Ready
		logger.Info("Starting in standalone mode", "podCIDRs", podCIDRs, "conflist", path)
	} else {
		if client == nil || routes == nil {
			return errors.New("an API client and a netlink handle are needed without --pod-cidr")
		}
		c, err := NewController(ControllerConfig{
			NodeName: o.NodeName, Client: client, ConflistPath: path, Conflist: conf,
			Routes: &RouteReconciler{Handle: routes}, Resync: o.Resync, Metrics: m,
		})
		if err != nil {
			return err
		}
		run, ready = c.Run, c.Ready
		logger.Info("Starting", "node", o.NodeName, "conflist", path, "resync", o.Resync)
	}

	g, ctx := errgroup.WithContext(ctx)
	if o.MetricsAddress != "" {
		l, err := net.Listen("tcp", o.MetricsAddress)
		if err != nil {
			return fmt.Errorf("listen on --metrics-address: %w", err)
		}
		logger.Info("Serving health and metrics", "address", l.Addr().String())
		g.Go(func() error { return Serve(ctx, l, Handler(ready, reg)) })
	}
	g.Go(func() error { return run(ctx) })
	if err := g.Wait(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
