package cri

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func goodPod() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "7f3c"},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/default_web_7f3c",
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10", "fd00::a", "fe80::1%eth0"},
			Searches: []string{"default.svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5", "edns0"}},
	}
}

func TestValidatePodConfig(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		change func(*runtimeapi.PodSandboxConfig)
		want   string // "" = valid; else a part of the message
	}{
		{"what kubelet sends", func(*runtimeapi.PodSandboxConfig) {}, ""},
		{"no config", nil, "config is required"},
		{"no uid", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "" }, "uid is required"},
		{"newline in the name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a\nb" }, "control characters"},
		{"hostname with a slash", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "a/b" }, "hostname"},
		{"hostname with a newline", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "a\n127.0.0.1 evil" }, "hostname"},
		{"hostname too long", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) }, "hostname"},
		{"hostname of 64", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 64) }, ""},
		{"relative log directory", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods/x" }, "log_directory"},
		{"log directory climbing out", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/pods/../../etc" }, "'..'"},
		{"log directory with a NUL", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/\x00" }, "NUL"},
		{"dns server that is not an IP", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Servers = []string{"dns.example"} }, "not an IP"},
		{"dns server injecting a line", func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig.Servers = []string{"10.0.0.1\nnameserver 6.6.6.6"}
		}, "not an IP"},
		{"search domain with a newline", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Searches = []string{"a\noptions x"} }, "search domain"},
		{"search domain with a space", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Searches = []string{"a b"} }, "search domain"},
		{"empty option", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Options = []string{""} }, "option"},
		{"host network pod without hostname or dns", func(c *runtimeapi.PodSandboxConfig) { c.Hostname, c.DnsConfig = "", nil }, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var cfg *runtimeapi.PodSandboxConfig
			if tc.change != nil {
				cfg = goodPod()
				tc.change(cfg)
			}
			checkInvalid(t, validatePodConfig(cfg), tc.want)
		})
	}
}

func goodContainer() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "app"},
		Image:      &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
		Command:    []string{"sh", "-c"},
		Args:       []string{"echo hi"},
		WorkingDir: "/srv",
		Envs:       []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b=c")}, {Key: "EMPTY"}},
		LogPath:    "app/0.log",
		Mounts:     []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/x/volumes/d"}},
		Devices:    []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwm"}},
	}
}

func TestValidateContainerConfig(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		change func(*runtimeapi.ContainerConfig)
		want   string
	}{
		{"what kubelet sends", func(*runtimeapi.ContainerConfig) {}, ""},
		{"no config", nil, "config is required"},
		{"no image", func(c *runtimeapi.ContainerConfig) { c.Image = nil }, "image is required"},
		{"name with a slash", func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "../x" }, "slashes"},
		{"log path climbing out", func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../../etc/cron.d/x" }, "log_path"},
		{"absolute log path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "/etc/passwd" }, "log_path"},
		{"log path naming the log directory", func(c *runtimeapi.ContainerConfig) { c.LogPath = "." }, "log_path"},
		{"log path climbing back to the log directory", func(c *runtimeapi.ContainerConfig) { c.LogPath = "app/.." }, "log_path"},
		{"relative working dir", func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "srv" }, "working_dir"},
		{"NUL in an argument", func(c *runtimeapi.ContainerConfig) { c.Args = []string{"a\x00b"} }, "NUL"},
		{"env name with '='", func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Key: "A=B", Value: []byte("c")}} }, "environment"},
		{"empty env name", func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Value: []byte("c")}} }, "environment"},
		{"relative mount source", func(c *runtimeapi.ContainerConfig) { c.Mounts[0].HostPath = "data" }, "host_path"},
		{"image volume without host path", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/model", Image: &runtimeapi.ImageSpec{Image: "example.com/model:1"}}}
		}, ""},
		{"relative device", func(c *runtimeapi.ContainerConfig) { c.Devices[0].ContainerPath = "dev/fuse" }, "device"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var cfg *runtimeapi.ContainerConfig
			if tc.change != nil {
				cfg = goodContainer()
				tc.change(cfg)
			}
			checkInvalid(t, validateContainerConfig(cfg), tc.want)
		})
	}
}

func checkInvalid(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("refused: %v", err)
	case want != "" && err == nil:
		t.Errorf("accepted, want an error with %q", want)
	case want != "" && (!errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), want)):
		t.Errorf("error %v, want InvalidArgument with %q", err, want)
	}
}

// FuzzValidatePodConfig: whatever the strings, validation does not panic,
// and what it accepts cannot add a line to resolv.conf or the hostname file,
// nor lead the log directory out of itself.
func FuzzValidatePodConfig(f *testing.F) {
	f.Add("web-0", "/var/log/pods/a_b_c", "10.96.0.10", "cluster.local", "ndots:5")
	f.Add("a\nb", "/x/../y", "1.2.3.4\nnameserver 5.6.7.8", "a b", "")
	f.Add("", "", "fe80::1%eth0", ".", "edns0")
	f.Fuzz(func(t *testing.T, hostname, logDir, server, search, option string) {
		cfg := goodPod()
		cfg.Hostname, cfg.LogDirectory = hostname, logDir
		cfg.DnsConfig.Servers, cfg.DnsConfig.Searches, cfg.DnsConfig.Options = []string{server}, []string{search}, []string{option}
		if validatePodConfig(cfg) != nil {
			return
		}
		for _, v := range []string{hostname, server, search, option} {
			if strings.ContainsAny(v, "\n\r\x00 \t") {
				t.Errorf("accepted %q, which would break a pod file", v)
			}
		}
		if logDir != "" && (!strings.HasPrefix(logDir, "/") || strings.Contains(logDir+"/", "/../")) {
			t.Errorf("accepted log directory %q", logDir)
		}
	})
}

// FuzzValidateContainerConfig: what validation accepts keeps the log file
// inside the pod's log directory and gives runc an absolute working dir.
func FuzzValidateContainerConfig(f *testing.F) {
	f.Add("app", "app/0.log", "/srv")
	f.Add("../x", "../../etc/x", "srv")
	f.Add("a", "a/./../../b", "")
	f.Fuzz(func(t *testing.T, name, logPath, workingDir string) {
		cfg := goodContainer()
		cfg.Metadata.Name, cfg.LogPath, cfg.WorkingDir = name, logPath, workingDir
		if validateContainerConfig(cfg) != nil {
			return
		}
		dir := "/var/log/pods/ns_pod_uid"
		if logPath != "" {
			if p := filepath.Join(dir, logPath); !strings.HasPrefix(p, dir+"/") {
				t.Errorf("accepted log_path %q: the log file would be %s", logPath, p)
			}
		}
		if workingDir != "" && !filepath.IsAbs(workingDir) {
			t.Errorf("accepted working_dir %q", workingDir)
		}
		if strings.Contains(name, "/") {
			t.Errorf("accepted name %q", name)
		}
	})
}
