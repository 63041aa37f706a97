// Package pause owns the pause container: the pause program (program/pause.c,
// a few KiB of C without libc, built by hack/build.sh into cri-shim-pause),
// its read-only rootfs for the built-in pause, and the pause container's OCI
// spec, which holds the pod's namespaces. pkg/pod starts and removes the
// pause through the monitor like any container; what a pause is lives here.
//
// The program sleeps until SIGTERM or SIGINT and, as PID 1 of a pod that
// shares its PID namespace, lets the kernel reap orphans (SIGCHLD ignored
// with SA_NOCLDWAIT). Without libc it costs ~10 KiB PSS per pod, where a Go
// pause costs ~0.6 MiB.
package pause

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// UID is the unprivileged user the built-in pause runs as (what the
// upstream pause image declares), and the fallback for a pause image whose
// user cannot be resolved.
const UID = 65535

// Args is the built-in pause's command line, and the fallback for a pause
// image without one.
var Args = []string{"/pause"}

// PrepareRootfs installs the pause program (binary) as /pause in
// dir/rootfs, with the mount points a container needs, once: an existing
// copy of the same size is kept. It returns the rootfs.
func PrepareRootfs(dir, binary string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	dst := filepath.Join(rootfs, "pause")
	if st, err := os.Stat(dst); err == nil && st.Size() > 0 {
		if src, err := os.Stat(binary); err == nil && src.Size() == st.Size() {
			return rootfs, nil
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	in, err := os.Open(binary)
	if err != nil {
		return "", fmt.Errorf("pause program: %w", err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return "", fmt.Errorf("install pause program: %w", err)
	}
	return rootfs, nil
}

// Config describes one pod's pause container.
type Config struct {
	SandboxID string
	Rootfs    string   // read-only: the built-in one, or the pause image's
	Args      []string // the command
	UID, GID  uint32
	// NetNS is the pinned network namespace the pause joins; empty with
	// HostNetwork.
	NetNS       string
	HostNetwork bool // also the host's UTS namespace (hostname)
	HostIPC     bool
	HostPID     bool // otherwise the pause gets the pod's PID namespace
	Hostname    string
	Sysctls     map[string]string
	// UserNS is the pinned user namespace the pause joins (it owns NetNS);
	// empty: the host's.
	UserNS string
	// Extra options the pod adds: its cgroup, its resources.
	Extra []runtime.SpecOpt
}

// Spec is the pause container's spec: unprivileged, no capabilities, no new
// privileges, hard to OOM-kill, holding the pod's network (the pinned netns
// or the host's), IPC, UTS and, unless the pod uses the host's, PID
// namespaces.
func Spec(c Config) (*specs.Spec, error) {
	opts := []runtime.SpecOpt{
		runtime.WithRootfs(c.Rootfs, true),
		runtime.WithArgs(c.Args...),
		runtime.WithUser(c.UID, c.GID, nil),
		runtime.WithCapabilities(nil),
		runtime.WithNoNewPrivileges(true),
		runtime.WithOOMScoreAdj(-998, true),
		runtime.WithSysctl(c.Sysctls),
		runtime.WithAnnotations(map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": c.SandboxID}),
	}
	if c.HostNetwork {
		opts = append(opts, runtime.WithoutNamespace(specs.NetworkNamespace), runtime.WithoutNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, runtime.WithNamespace(specs.NetworkNamespace, c.NetNS), runtime.WithHostname(c.Hostname))
	}
	if c.UserNS != "" {
		// Joined by path, without mappings: the runtime reads them from the
		// namespace (runc >= 1.2 refuses a path with differing mappings).
		opts = append(opts, runtime.WithNamespace(specs.UserNamespace, c.UserNS))
	}
	if c.HostIPC {
		opts = append(opts, runtime.WithoutNamespace(specs.IPCNamespace))
	}
	if c.HostPID {
		opts = append(opts, runtime.WithoutNamespace(specs.PIDNamespace))
	}
	return runtime.NewSpec(append(opts, c.Extra...)...)
}
