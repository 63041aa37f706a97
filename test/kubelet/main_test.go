package kubelet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// config is where the binaries are, from the environment (hack/kubelet-e2e.sh
// sets it all).
var config struct {
	enabled    bool
	why        string // why the tests skip
	kubeBin    string // KUBE_BIN_DIR: kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl
	shimBin    string // CRI_SHIM_BIN_DIR: cri-shim (+ monitor, pause), cni-bridge, cni-bridge-agent, testimages
	etcd       string // ETCD: etcd binary (default from PATH)
	containerd string // CONTAINERD: containerd binary for the reference runtime (default from PATH)
	// CONTAINERD2_DIR: containerd 2.x and its containerd-shim-runc-v2
	// (hack/lib/containerd2.sh); empty when absent.
	containerd2 string
	cniPlugins  string // CNI_PLUGINS_DIR: the standard plugins for containerd (default /usr/lib/cni)
	imageCache  string // TESTIMAGES_CACHE: testimages' build cache
	artifacts   string // KUBELET_E2E_ARTIFACTS: copy every log here
	results     string // KUBELET_E2E_RESULTS: append measured figures here
}

func TestMain(m *testing.M) {
	loadConfig()
	if !config.enabled {
		fmt.Fprintln(os.Stderr, "test/kubelet: skipping:", config.why)
	} else {
		cleanupOnSignal()
	}
	os.Exit(m.Run())
}

func loadConfig() {
	c := &config
	if os.Getenv("KUBELET_E2E") != "1" {
		c.why = "set KUBELET_E2E=1, KUBE_BIN_DIR and CRI_SHIM_BIN_DIR (sudo hack/kubelet-e2e.sh does)"
		return
	}
	if os.Geteuid() != 0 {
		c.why = "needs root (namespaces, mounts, cgroups)"
		return
	}
	c.kubeBin, c.shimBin = os.Getenv("KUBE_BIN_DIR"), os.Getenv("CRI_SHIM_BIN_DIR")
	c.etcd, c.containerd = lookPath(os.Getenv("ETCD"), "etcd"), lookPath(os.Getenv("CONTAINERD"), "containerd")
	c.cniPlugins = envOr("CNI_PLUGINS_DIR", "/usr/lib/cni")
	if d := os.Getenv("CONTAINERD2_DIR"); executable(filepath.Join(d, "containerd")) && executable(filepath.Join(d, "containerd-shim-runc-v2")) {
		c.containerd2 = d
	}
	c.imageCache = os.Getenv("TESTIMAGES_CACHE")
	c.artifacts, c.results = os.Getenv("KUBELET_E2E_ARTIFACTS"), os.Getenv("KUBELET_E2E_RESULTS")
	var missing []string
	for _, f := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl"} {
		if !executable(filepath.Join(c.kubeBin, f)) {
			missing = append(missing, "$KUBE_BIN_DIR/"+f)
		}
	}
	for _, f := range []string{"cri-shim", "cri-shim-monitor", "cri-shim-pause", "cni-bridge", "cni-bridge-agent", "testimages"} {
		if !executable(filepath.Join(c.shimBin, f)) {
			missing = append(missing, "$CRI_SHIM_BIN_DIR/"+f)
		}
	}
	if c.kubeBin == "" || c.shimBin == "" || len(missing) > 0 {
		c.why = "KUBELET_E2E=1 but binaries are missing: " + strings.Join(missing, ", ")
		return
	}
	c.enabled = true
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func lookPath(given, name string) string {
	if given != "" {
		return given
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// requireE2E skips the test unless the environment asks for these tests.
func requireE2E(t *testing.T) {
	t.Helper()
	if !config.enabled {
		t.Skip(config.why)
	}
}

// record appends a measured figure to $KUBELET_E2E_RESULTS (the summary
// hack/kubelet-e2e.sh prints) and to the test log.
func record(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if config.results == "" {
		return
	}
	f, err := os.OpenFile(config.results, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("record result: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}
