package apparmor

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// DefaultProfileName is the profile a container gets when it asks for the
// runtime default (CRI RuntimeDefault) or for nothing.
const DefaultProfileName = "cri-shim-default"

// profileTemplate is the default profile.
//
// It is self-contained on purpose: no "abi" rule and no includes.
//   - abi: without the rule the parser compiles against the feature set the
//     distribution pins in /etc/apparmor/parser.conf (or the kernel's), as it
//     does for every profile that predates abi rules; that works with the
//     parsers of AppArmor 2.13 to 4.x alike, while <abi/3.0> is unknown to
//     2.x and abi/4.0 rules (userns, io_uring, mqueue) are unknown to 3.x.
//   - includes: <tunables/global> and <abstractions/base> live in
//     /etc/apparmor.d and are missing on minimal nodes; "include if exists"
//     would leave @{PROC} undefined there. The profile needs neither: it
//     names /proc literally (procfs is always at /proc in a container) and
//     grants all file access, a superset of what abstractions/base grants.
//
// The coarse rules (capability, network, unix, file) allow what the OCI
// spec already decides (capability sets, network namespace, mounts,
// read-only paths); the deny rules below are defence in depth against
// what a process could do to the host should those be relaxed.
var profileTemplate = template.Must(template.New("profile").Parse(`# {{.Name}}: cri-shim's AppArmor profile for containers that ask for
# the runtime default. Generated and loaded by cri-shim at each start.
profile {{.Name}} flags=(attach_disconnected,mediate_deleted) {
  capability,
  network,
  unix,
  file,

  # The container may unmount what it was given, but not mount: every mount
  # it needs was made by the runtime before this profile took effect.
  umount,
  deny mount,
  deny pivot_root,

  # Signals and ptrace stay inside the container's profile, except that the
  # host may signal it: unconfined processes (kubelet, cri-shim and its
  # monitor), and the OCI runtime, which AppArmor 4 policy runs under its
  # own profile named after it.
  signal (send,receive) peer={{.Name}},
  signal (receive) peer=unconfined,
  signal (receive) peer={runc,crun,/usr/{,local/}{,s}bin/{runc,crun}},
{{- range .Peers}}
  signal (receive) peer={{.}},
{{- end}}
  ptrace (trace,tracedby,read,readby) peer={{.Name}},

  # /proc: a process may write its own /proc/<pid>/ files (oom_score_adj,
  # comm, attr); nothing else, except the sysctls of its own IPC namespace
  # (kernel.shm*, kernel.msg*, kernel.sem*).
  deny /proc/* w,
  deny /proc/[^0-9s]*/** w,
  deny /proc/s[^y]*/** w,
  deny /proc/sy[^s]*/** w,
  deny /proc/sys?*/** w,
  deny /proc/sys/[^k]** w,
  deny /proc/sys/kernel/[^ms]** w,
  deny /proc/sys/kernel/m[^s]** w,
  deny /proc/sys/kernel/ms[^g]** w,
  deny /proc/sys/kernel/s[^eh]** w,
  deny /proc/sys/kernel/se[^m]** w,
  deny /proc/sys/kernel/sh[^m]** w,
  deny /proc/{sysrq-trigger,kcore} rwklx,

  # /sys: no writes, except to the container's cgroup tree under
  # /sys/fs/cgroup (delegation, nested runtimes); no reads of firmware
  # tables, LSM policy or power meters (a side channel).
  deny /sys/[^f]** wklx,
  deny /sys/f[^s]** wklx,
  deny /sys/fs/[^c]** wklx,
  deny /sys/fs/c[^g]** wklx,
  deny /sys/fs/cg[^r]** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
}
`))

// profileData fills profileTemplate.
type profileData struct {
	Name string
	// Peers are more labels the container accepts signals from.
	Peers []string
}

// safeLabel is a profile name we are willing to write into a rule: no
// AppArmor pattern characters, no stacking ("//&"), no namespaces.
var safeLabel = regexp.MustCompile(`^[A-Za-z0-9/_][A-Za-z0-9/_.+-]*$`)

// renderProfile is the default profile's text under the given name.
func renderProfile(name string, peers []string) (string, error) {
	if !safeLabel.MatchString(name) {
		return "", fmt.Errorf("AppArmor profile name %q is not one cri-shim generates", name)
	}
	var b strings.Builder
	if err := profileTemplate.Execute(&b, profileData{Name: name, Peers: peers}); err != nil {
		return "", fmt.Errorf("render AppArmor profile %q: %w", name, err)
	}
	return b.String(), nil
}

// DefaultProfile is the text of the default profile as LoadDefault loads it
// on this host.
//
// When cri-shim itself runs confined (a unit's AppArmorProfile=, a distro
// profile), the runc it starts inherits that label and must be able to
// signal (stop) containers, so the label is added to the peers the profile
// accepts signals from. Unconfined, the usual case, adds nothing.
func (h *Host) DefaultProfile() string {
	var peers []string
	if l := h.ownLabel(); l != "" {
		peers = append(peers, l)
	}
	text, err := renderProfile(DefaultProfileName, peers)
	if err != nil {
		// DefaultProfileName and the peers are checked against safeLabel,
		// and the template is fixed: this cannot fail.
		panic(err)
	}
	return text
}

// ownLabel is the AppArmor label this process runs under, "" when it is
// unconfined or the label cannot be written into a rule as it is.
func (h *Host) ownLabel() string {
	// attr/apparmor/current is the LSM-specific file of newer kernels (it
	// stays AppArmor's when another LSM is stacked); attr/current is the
	// old, shared one.
	var data []byte
	for _, p := range []string{"self/attr/apparmor/current", "self/attr/current"} {
		var err error
		if data, err = os.ReadFile(filepath.Join(h.procDir(), p)); err == nil {
			break
		}
	}
	// "name (mode)", or "unconfined".
	label, _, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	if label == "" || label == "unconfined" || label == DefaultProfileName || !safeLabel.MatchString(label) {
		return ""
	}
	return label
}
