// Command cni-bridge-agent is the cni-bridge node agent (a DaemonSet): it
// writes this node's CNI config for its podCIDRs and routes every other
// node's pod subnet via that node's InternalIP. With --pod-cidr it only
// writes the config, for a node without an API server. The work lives in
// pkg/agent; this wires flags, the API client and the netlink handle.
//
// `cni-bridge-agent install-cni` copies the plugin binary from the image to
// the host (the DaemonSet's init container).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/agent"
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cni-bridge-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "install-cni" {
		return installCNI(args[1:])
	}
	fs := flag.NewFlagSet("cni-bridge-agent", flag.ContinueOnError)
	klog.InitFlags(fs)
	opts := agent.DefaultOptions()
	opts.NodeName = os.Getenv("NODE_NAME")
	opts.AddFlags(fs)
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *version {
		fmt.Println("cni-bridge-agent", Version)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if opts.Standalone() {
		return agent.Run(ctx, opts, nil, nil)
	}

	if opts.NodeName == "" {
		// kubelet's default node name is the lower-cased hostname.
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --node-name or NODE_NAME, and no hostname: %w", err)
		}
		opts.NodeName = strings.ToLower(h)
		klog.FromContext(ctx).Info("No --node-name or NODE_NAME: using the hostname", "node", opts.NodeName)
	}
	cfg, err := restConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "cni-bridge-agent/" + Version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create API client: %w", err)
	}
	// A handle in the namespace the agent runs in: the host's (hostNetwork).
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	return agent.Run(ctx, opts, client, h)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (use --kubeconfig outside a pod, or --pod-cidr without an API server): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// installCNI copies the plugin binary into the host's CNI bin directory.
// The copy goes through a temp file and a rename: the runtime may execute
// the plugin at any moment, and overwriting a binary in place would fail
// (ETXTBSY) or hand it a half-written file. An identical binary is left
// alone.
func installCNI(args []string) error {
	fs := flag.NewFlagSet("install-cni", flag.ContinueOnError)
	src := fs.String("src", "/opt/cni-bridge/bin/cni-bridge", "plugin binary to install")
	destDir := fs.String("dest-dir", "/host/opt/cni/bin", "the host's CNI bin directory, mounted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*src)
	if err != nil {
		return fmt.Errorf("read plugin: %w", err)
	}
	dest := filepath.Join(*destDir, filepath.Base(*src))
	changed, err := agent.WriteFileAtomic(dest, data, 0o755)
	if err != nil {
		return fmt.Errorf("install plugin: %w", err)
	}
	if changed {
		fmt.Println("installed", dest)
	} else {
		fmt.Println(dest, "is up to date")
	}
	return nil
}
