// Command cri-shim is a Kubernetes CRI runtime: it serves the CRI
// RuntimeService and ImageService on a unix socket, runs every pod as a
// network namespace plus a pause container, and its containers with runc
// under a node-wide monitor (cri-shim-monitor) that outlives it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/apparmor"
	"github.com/cri-shim/cri-shim/pkg/cri"
	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/pod"
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cri-shim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "images" {
		return imagesCommand(args[1:])
	}
	fs := flag.NewFlagSet("cri-shim", flag.ContinueOnError)
	klog.InitFlags(fs)
	version := fs.Bool("version", false, "print the version and exit")
	cfg, err := load(args, fs)
	if err != nil {
		return err
	}
	if *version {
		fmt.Println("cri-shim", Version)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg)
}

// helperBinary finds a companion program: next to our executable first,
// then on PATH.
func helperBinary(name string) (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to cri-shim or on PATH (hack/build.sh builds it)", name)
	}
	return p, nil
}

func serve(ctx context.Context, cfg Config) error {
	logger := klog.FromContext(ctx)
	for _, d := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.Listen)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	logger.Info("Cgroup driver", "driver", cfg.CgroupDriver)
	if apparmor.Enabled() {
		// Not fatal: CreateContainer loads it again when it is missing.
		if err := apparmor.LoadDefault(ctx); err != nil {
			logger.Error(err, "Cannot load the default AppArmor profile; containers that use it fail until it loads", "profile", apparmor.DefaultProfileName)
		} else {
			logger.Info("AppArmor enabled: containers run under the default profile unless they ask otherwise", "profile", apparmor.DefaultProfileName)
		}
	} else {
		logger.Info("AppArmor is not enabled on this host: no AppArmor profile is applied to containers")
	}
	monitorBin, err := helperBinary("cri-shim-monitor")
	if err != nil {
		return err
	}
	pauseBin, err := helperBinary("cri-shim-pause")
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	var pods *pod.Manager
	images, err := image.New(ctx, image.Options{
		Root:              filepath.Join(cfg.Root, "images"),
		RegistryConfigDir: cfg.RegistryConfigDir,
		Registerer:        reg,
		Pinned:            pinned(cfg.PauseImage),
		// An image a container uses cannot be removed (FailedPrecondition).
		InUse: func(imageID string) bool { return pods != nil && pods.ImageInUse(imageID) },
	})
	if err != nil {
		return fmt.Errorf("open image store: %w", err)
	}
	statsPeriod, _ := cfg.statsPeriod() // checked by load
	pods, err = pod.New(ctx, pod.Config{
		Root: cfg.Root, State: cfg.State, Runtime: cfg.Runtime,
		MonitorBinary: monitorBin, PauseBinary: pauseBin, PauseImage: cfg.PauseImage,
		CNIConfDir: cfg.CNIConfDir, CNIBinDirs: filepath.SplitList(cfg.CNIBinDir),
		CgroupDriver: cfg.CgroupDriver, Images: images, ImageFsMountpoint: filepath.Join(cfg.Root, "images"),
		CDISpecDirs: filepath.SplitList(cfg.CDISpecDirs), CRIU: cfg.CRIU, Handlers: handlers(cfg.Runtimes),
		StatsPeriod: statsPeriod,
		Fault:       failpoint(os.Getenv("CRI_SHIM_FAILPOINT")),
	})
	if err != nil {
		return err
	}

	srv := &cri.Server{Pods: pods, Images: images, RuntimeVersion: Version, CgroupDriver: cfg.CgroupDriver,
		AppArmor: apparmor.Enabled()}
	streamSrv, err := cri.NewStreamingServer(cfg.StreamAddress, pods)
	if err != nil {
		return err
	}
	srv.Streaming = streamSrv
	go func() {
		if err := streamSrv.Start(true); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "Streaming server stopped")
		}
	}()
	defer streamSrv.Stop()

	if cfg.MetricsAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		go func() {
			if err := http.ListenAndServe(cfg.MetricsAddress, mux); err != nil {
				logger.Error(err, "Metrics server stopped")
			}
		}()
	}

	// A socket left by a previous process (crash, kill -9) is replaced; a
	// live one means another cri-shim serves it.
	if c, err := net.Dial("unix", cfg.Listen); err == nil {
		c.Close()
		return fmt.Errorf("another process serves %s", cfg.Listen)
	}
	os.Remove(cfg.Listen)
	l, err := net.Listen("unix", cfg.Listen)
	if err != nil {
		return err
	}
	rpcMetrics, err := cri.NewRPCMetrics(reg)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(cri.ServerOptions(rpcMetrics)...)
	srv.Register(gs)
	logger.Info("Serving the CRI", "socket", cfg.Listen, "version", Version)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	select {
	case <-ctx.Done():
		logger.Info("Shutting down; containers keep running")
		gs.Stop()
		return nil
	case err := <-errc:
		return err
	}
}

// pinned is the pause image, which image removal and GC must never take.
func pinned(pauseImage string) []string {
	if pauseImage == "" {
		return nil
	}
	return []string{pauseImage}
}

// failpoint returns a fault hook for pkg/pod's Fault steps, set only by the
// durability tests through CRI_SHIM_FAILPOINT:
//
//   - "STEP": SIGKILL this process at STEP (a crash there loses and leaks
//     nothing once cri-shim restarts);
//   - "error:STEP": fail the operation at STEP with an error, every time
//     (its undo leaves nothing behind while cri-shim keeps running).
func failpoint(spec string) func(string) error {
	if spec == "" {
		return nil
	}
	if step, ok := strings.CutPrefix(spec, "error:"); ok {
		return func(at string) error {
			if at == step {
				klog.Background().Info("Failpoint reached, failing the operation", "step", at)
				return fmt.Errorf("failpoint %s (CRI_SHIM_FAILPOINT)", at)
			}
			return nil
		}
	}
	return func(at string) error {
		if at == spec {
			klog.Background().Info("Failpoint reached, killing cri-shim", "step", at)
			klog.Flush()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
}

// imagesCommand implements `cri-shim images import [--address SOCK] [FILE|-]`:
// it streams a docker-archive or OCI-archive tarball to the running daemon,
// which imports it with its tags (like `ctr images import`).
func imagesCommand(args []string) error {
	if len(args) < 1 || args[0] != "import" {
		return errors.New("usage: cri-shim images import [--address SOCK] [FILE|-]")
	}
	fs := flag.NewFlagSet("images import", flag.ContinueOnError)
	addr := fs.String("address", defaultConfig().Listen, "cri-shim's socket")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	in := os.Stdin
	if f := fs.Arg(0); f != "" && f != "-" {
		file, err := os.Open(f)
		if err != nil {
			return err
		}
		defer file.Close()
		in = file
	}
	conn, err := grpc.NewClient("unix://"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	imgs, err := cri.ImportClient(conn, in)
	if err != nil {
		return fmt.Errorf("import into cri-shim at %s: %w", *addr, err)
	}
	for _, img := range imgs {
		fmt.Printf("%s %s\n", img.ID, strings.Join(img.RepoTags, ","))
	}
	return nil
}

// handlers converts the [runtimes.NAME] tables.
func handlers(rs map[string]RuntimeHandler) map[string]pod.Handler {
	out := map[string]pod.Handler{}
	for name, r := range rs {
		out[name] = pod.Handler{Binary: r.Binary, Root: r.Root}
	}
	return out
}
