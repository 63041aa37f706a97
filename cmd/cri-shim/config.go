package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/cri-shim/cri-shim/pkg/pod"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// Config is cri-shim's configuration: every flag is also a key of the
// TOML file given with --config, and flags win over the file.
type Config struct {
	Listen            string `toml:"listen"`
	Root              string `toml:"root"`
	State             string `toml:"state"`
	CNIConfDir        string `toml:"cni_conf_dir"`
	CNIBinDir         string `toml:"cni_bin_dir"`
	RegistryConfigDir string `toml:"registry_config_dir"`
	Runtime           string `toml:"runtime"`
	PauseImage        string `toml:"pause_image"`
	StreamAddress     string `toml:"stream_address"`
	CgroupDriver      string `toml:"cgroup_driver"`
	MetricsAddress    string `toml:"metrics_address"`
	CDISpecDirs       string `toml:"cdi_spec_dirs"`
	CRIU              string `toml:"criu"`
	// StatsCollectionPeriod is how often every container's and pod's stats
	// are read for ListContainerStats and ListPodSandboxStats (a Go
	// duration; "0": on each call, as CRI-O's stats_collection_period = 0).
	StatsCollectionPeriod string `toml:"stats_collection_period"`
	// Runtimes are RuntimeClass handlers besides the default (runtime):
	// a TOML table only ([runtimes.NAME] binary, root). crun is added
	// when it is installed, answers `crun features` and is not configured
	// (pod.New).
	Runtimes map[string]RuntimeHandler `toml:"runtimes"`
}

// RuntimeHandler is one [runtimes.NAME] table: an OCI runtime with runc's
// command line, and its state directory (default <state>/runtimes/NAME).
type RuntimeHandler struct {
	Binary string `toml:"binary"`
	Root   string `toml:"root"`
}

func defaultConfig() Config {
	return Config{
		Listen:            "/run/cri-shim/cri-shim.sock",
		Root:              "/var/lib/cri-shim",
		State:             "/run/cri-shim",
		CNIConfDir:        "/etc/cni/net.d",
		CNIBinDir:         "/opt/cni/bin",
		RegistryConfigDir: "/etc/cri-shim/certs.d",
		Runtime:           "runc",
		StreamAddress:     "127.0.0.1:0",
		// Empty: systemd where systemd is the init system, else cgroupfs
		// (resolved in load, so --help shows the choice).
		CgroupDriver: "",
		// Where device plugins and DRA drivers write CDI specs, in order of
		// precedence (the CDI project's defaults, as containerd and CRI-O).
		CDISpecDirs:           "/etc/cdi:/var/run/cdi",
		CRIU:                  "criu",
		StatsCollectionPeriod: pod.DefaultStatsPeriod.String(),
	}
}

// bindFlags registers the flags on fs, with defaults from c.
func (c *Config) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "unix socket to serve the CRI on")
	fs.StringVar(&c.Root, "root", c.Root, "persistent state directory (images, records)")
	fs.StringVar(&c.State, "state", c.State, "volatile state directory (runtime state, netns pins, monitor)")
	fs.StringVar(&c.CNIConfDir, "cni-conf-dir", c.CNIConfDir, "CNI network config directory")
	fs.StringVar(&c.CNIBinDir, "cni-bin-dir", c.CNIBinDir, "CNI plugin directories, separated by ':'")
	fs.StringVar(&c.RegistryConfigDir, "registry-config-dir", c.RegistryConfigDir, "registry hosts config (containerd's certs.d layout: <host>/hosts.toml)")
	fs.StringVar(&c.Runtime, "runtime", c.Runtime, "OCI runtime binary (runc; crun takes the same command line)")
	fs.StringVar(&c.PauseImage, "pause-image", c.PauseImage, "image for pause containers (default: the built-in pause, no registry needed)")
	fs.StringVar(&c.StreamAddress, "stream-address", c.StreamAddress, "host:port of the exec/attach/port-forward streaming server")
	fs.StringVar(&c.CgroupDriver, "cgroup-driver", c.CgroupDriver, "cgroup driver: cgroupfs or systemd; empty: systemd when systemd is the init system, else cgroupfs (kubelet takes it from cri-shim through RuntimeConfig)")
	fs.StringVar(&c.MetricsAddress, "metrics-address", c.MetricsAddress, "host:port to serve Prometheus metrics on (empty: off)")
	fs.StringVar(&c.CDISpecDirs, "cdi-spec-dirs", c.CDISpecDirs, "CDI spec directories, separated by ':' (empty: CDI devices are refused)")
	fs.StringVar(&c.CRIU, "criu", c.CRIU, "CRIU binary for CheckpointContainer (a path, or a name looked up in PATH)")
	fs.StringVar(&c.StatsCollectionPeriod, "stats-collection-period", c.StatsCollectionPeriod,
		"how often every container's and pod's stats are read for the list calls, which answer from those samples (0: read on each call)")
}

// statsPeriod is StatsCollectionPeriod for pod.Config (negative: off).
func (c *Config) statsPeriod() (time.Duration, error) {
	d, err := time.ParseDuration(c.StatsCollectionPeriod)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--stats-collection-period %q: want a duration such as 10s, or 0", c.StatsCollectionPeriod)
	}
	if d == 0 {
		return -1, nil
	}
	return d, nil
}

// load parses the config file (if any) and then the flags, so flags win.
func load(args []string, fs *flag.FlagSet) (Config, error) {
	cfg := defaultConfig()
	// Find --config first: the file sets defaults the flags then override.
	path := ""
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if v, ok := strings.CutPrefix(a, "-config="); ok {
			path = v
		} else if (a == "--config" || a == "-config") && i+1 < len(args) {
			path = args[i+1]
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := toml.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	var ignored string
	fs.StringVar(&ignored, "config", path, "TOML config file; every flag is also a key (listen, root, state, cni_conf_dir, ...)")
	cfg.bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if _, err := cfg.statsPeriod(); err != nil {
		return cfg, err
	}
	switch cfg.CgroupDriver {
	case "":
		cfg.CgroupDriver = runtime.DetectCgroupDriver()
	case runtime.CgroupfsDriver, runtime.SystemdDriver:
	default:
		return cfg, fmt.Errorf("--cgroup-driver must be cgroupfs or systemd (or empty to detect), not %q", cfg.CgroupDriver)
	}
	return cfg, nil
}
