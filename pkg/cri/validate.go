package cri

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Request fields that end up in a path, a file or a command line are
// checked here, before anything is made, so that a bad request is an
// InvalidArgument that names the field instead of a stray directory, a
// resolv.conf with an injected line, or an error from deep inside runc.
// (The cgroup parent is checked by pkg/runtime's cgroup helper, which owns
// its syntax for both drivers.)

// hostNameMax is the kernel's HOST_NAME_MAX: sethostname refuses more.
const hostNameMax = 64

// validatePodConfig checks a RunPodSandbox config.
func validatePodConfig(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil {
		return invalidf("pod sandbox config is required")
	}
	md := cfg.GetMetadata()
	switch {
	case md == nil:
		return invalidf("pod sandbox metadata is required")
	case md.GetName() == "":
		return invalidf("pod sandbox metadata: name is required")
	case md.GetNamespace() == "":
		return invalidf("pod sandbox metadata: namespace is required")
	case md.GetUid() == "":
		return invalidf("pod sandbox metadata: uid is required")
	}
	for field, v := range map[string]string{"name": md.GetName(), "namespace": md.GetNamespace(), "uid": md.GetUid()} {
		if hasControl(v) {
			return invalidf("pod sandbox metadata: %s %q has control characters", field, v)
		}
	}
	if h := cfg.GetHostname(); h != "" {
		if len(h) > hostNameMax || strings.ContainsFunc(h, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return invalidf("hostname %q: at most %d characters, without spaces, slashes or control characters", h, hostNameMax)
		}
	}
	if dir := cfg.GetLogDirectory(); dir != "" {
		if err := cleanAbsolute(dir); err != nil {
			return invalidf("log_directory: %v", err)
		}
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		// Each value becomes one word of resolv.conf.
		for _, s := range dns.GetServers() {
			// netip takes any text as an IPv6 zone ("::%a b"): the word
			// check keeps the zone one word too.
			if _, err := netip.ParseAddr(s); err != nil || !isWord(s) {
				return invalidf("dns_config: server %q is not an IP address", s)
			}
		}
		for _, s := range dns.GetSearches() {
			if s == "" || !isWord(s) {
				return invalidf("dns_config: search domain %q must be one word without spaces or control characters", s)
			}
		}
		for _, o := range dns.GetOptions() {
			if o == "" || !isWord(o) {
				return invalidf("dns_config: option %q must be one word without spaces or control characters", o)
			}
		}
	}
	return nil
}

// validateContainerConfig checks a CreateContainer config.
func validateContainerConfig(cfg *runtimeapi.ContainerConfig) error {
	switch {
	case cfg == nil:
		return invalidf("container config is required")
	case cfg.GetMetadata() == nil || cfg.GetMetadata().GetName() == "":
		return invalidf("container metadata with a name is required")
	case cfg.GetImage().GetImage() == "":
		return invalidf("container image is required")
	}
	name := cfg.GetMetadata().GetName()
	if hasControl(name) || strings.Contains(name, "/") {
		return invalidf("container name %q has slashes or control characters", name)
	}
	// "." (or "a/..") is local but names the pod's log directory itself.
	if p := cfg.GetLogPath(); p != "" && (!filepath.IsLocal(p) || filepath.Clean(p) == ".") {
		// It is joined to the sandbox's log_directory: it must stay inside.
		return invalidf("container %q: log_path %q must be a relative path inside the pod's log directory", name, p)
	}
	if wd := cfg.GetWorkingDir(); wd != "" && !filepath.IsAbs(wd) {
		return invalidf("container %q: working_dir %q is not an absolute path", name, wd)
	}
	for _, list := range [][]string{cfg.GetCommand(), cfg.GetArgs()} {
		for _, a := range list {
			if strings.ContainsRune(a, 0) {
				return invalidf("container %q: command or argument %q has a NUL byte", name, a)
			}
		}
	}
	for _, e := range cfg.GetEnvs() {
		k := e.GetKey()
		if k == "" || strings.ContainsAny(k, "=\x00") || bytes.IndexByte(e.GetValue(), 0) >= 0 {
			return invalidf("container %q: environment variable %q: the name must be non-empty without '=' and neither may hold a NUL byte", name, k)
		}
	}
	for _, m := range cfg.GetMounts() {
		if m.GetImage().GetImage() != "" {
			continue // an image volume has no host path (pkg/pod decides)
		}
		if !filepath.IsAbs(m.GetHostPath()) || strings.ContainsRune(m.GetHostPath(), 0) {
			return invalidf("container %q: mount host_path %q is not an absolute path", name, m.GetHostPath())
		}
	}
	for _, d := range cfg.GetDevices() {
		if !filepath.IsAbs(d.GetHostPath()) || !filepath.IsAbs(d.GetContainerPath()) {
			return invalidf("container %q: device %q -> %q: both paths must be absolute", name, d.GetHostPath(), d.GetContainerPath())
		}
	}
	return nil
}

// cleanAbsolute accepts an absolute path without ".." elements or NUL.
func cleanAbsolute(p string) error {
	switch {
	case !filepath.IsAbs(p):
		return fmt.Errorf("%q is not an absolute path", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%q has a NUL byte", p)
	case strings.Contains("/"+p+"/", "/../"):
		return fmt.Errorf("%q has a '..' element", p)
	}
	return nil
}

func hasControl(s string) bool { return strings.ContainsFunc(s, unicode.IsControl) }

// isWord reports whether s has no spaces and no control characters.
func isWord(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

var errFailedPrecondition = errdefs.ErrFailedPrecondition

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}
