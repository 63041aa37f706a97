package pod

import (
	"context"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/apparmor"
)

// apparmorHost is what resolving a container's AppArmor profile needs from
// the node; *apparmor.Host is the real one, tests fake it.
type apparmorHost interface {
	Enabled() bool
	IsLoaded(name string) (bool, error)
	LoadDefault(ctx context.Context) error
}

var _ apparmorHost = (*apparmor.Host)(nil)

// The deprecated apparmor_profile strings (api.proto,
// LinuxContainerSecurityContext.apparmor_profile).
const (
	apparmorRuntimeDefault  = "runtime/default"
	apparmorUnconfined      = "unconfined"
	apparmorLocalhostPrefix = "localhost/"
)

// apparmorUnconfinedProfile is the OCI value for a container AppArmor does
// not confine: "unconfined", written out, as CRI-O and Docker do. Leaving
// process.apparmorProfile empty (containerd) would let the container keep
// the label runc runs under, which on AppArmor 4 systems whose policy ships
// a profile for /usr/sbin/runc is "runc (unconfined)": not what the pod
// asked for, and not what kubelet's node e2e ("can disable an AppArmor
// profile, using unconfined") reads from /proc/self/attr/current. The cost:
// where kernel.apparmor_restrict_unprivileged_userns is on (Ubuntu 24.04),
// such a container cannot create user namespaces, which runc's own profile
// would allow (compare moby/moby#48734).
const apparmorUnconfinedProfile = "unconfined"

// apparmorProfile resolves a container's AppArmor settings into the OCI
// process.apparmorProfile ("" = runc applies nothing).
//
// The structured field apparmor wins over the deprecated apparmor_profile
// string: kubelet fills both, and critest ("runtime should prefer new
// apparmor field") sends a loaded profile in the field and a missing one in
// the string.
//
// On a host without AppArmor nothing can be applied (runc refuses a
// profile it cannot apply): the runtime default and unconfined both mean
// "nothing", but a Localhost profile is a requirement the pod states and we
// cannot meet, so it is InvalidArgument, like a Localhost profile that is
// not loaded. (containerd fails RuntimeDefault there too; kubelet never sends
// it to a node without AppArmor, as its admission rejects such pods.)
//
// With AppArmor on:
//   - nothing asked, or RuntimeDefault: the default profile, loaded when
//     missing (containerd and CRI-O apply their default when nothing is
//     asked, kubernetes#51746); privileged containers run unconfined, as
//     api.proto says of privileged ("AppArmor confinement is not applied")
//     and as containerd and CRI-O do.
//   - Unconfined: unconfined (see apparmorUnconfinedProfile).
//   - Localhost: that profile, which must be loaded: the check here turns a
//     missing profile into an InvalidArgument from CreateContainer (critest
//     "should fail with an unloaded apparmor_profile" expects
//     CreateContainer to fail) instead of a failed StartContainer. It
//     applies to privileged containers too: an explicitly named profile is
//     the operator's choice, which containerd and Docker honour (CRI-O drops
//     it).
func apparmorProfile(ctx context.Context, sc *runtimeapi.LinuxContainerSecurityContext, host apparmorHost) (string, error) {
	p, err := apparmorRequest(sc)
	if err != nil {
		return "", err
	}
	if !host.Enabled() {
		if p.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
			return "", invalid("AppArmor is not enabled on this host, cannot apply profile %q", p.GetLocalhostRef())
		}
		return "", nil
	}
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_Localhost:
		name := p.GetLocalhostRef()
		loaded, err := host.IsLoaded(name)
		if err != nil {
			return "", fmt.Errorf("check AppArmor profile %q: %w", name, err)
		}
		if !loaded {
			return "", invalid("AppArmor profile %q is not loaded", name)
		}
		return name, nil
	case runtimeapi.SecurityProfile_Unconfined:
		return apparmorUnconfinedProfile, nil
	default: // RuntimeDefault, or nothing asked (p == nil)
		if sc.GetPrivileged() {
			return apparmorUnconfinedProfile, nil
		}
		if err := host.LoadDefault(ctx); err != nil {
			return "", fmt.Errorf("apply the default AppArmor profile: %w", err)
		}
		return apparmor.DefaultProfileName, nil
	}
}

// apparmorRequest is the profile a container asks for, from the field or
// else the deprecated string; nil when it asks for none. A Localhost
// profile comes back with its bare name in LocalhostRef.
func apparmorRequest(sc *runtimeapi.LinuxContainerSecurityContext) (*runtimeapi.SecurityProfile, error) {
	if p := sc.GetApparmor(); p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
			// api.proto: localhost_ref "must only be set if ProfileType is
			// Localhost"; containerd rejects it too.
			if p.GetLocalhostRef() != "" {
				return nil, invalid("AppArmor localhost_ref %q is set with profile type %v; it is only valid with Localhost",
					p.GetLocalhostRef(), p.GetProfileType())
			}
			return p, nil
		case runtimeapi.SecurityProfile_Localhost:
			// api.proto has the bare profile name here, but critest sends
			// "localhost/<name>", as in the deprecated string; containerd
			// and CRI-O strip the prefix as well.
			return localhostAppArmor(strings.TrimPrefix(p.GetLocalhostRef(), apparmorLocalhostPrefix))
		default:
			return nil, invalid("unknown AppArmor profile type %v", p.GetProfileType())
		}
	}
	switch s := sc.GetApparmorProfile(); {
	case s == "":
		return nil, nil
	case s == apparmorRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case s == apparmorUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	case strings.HasPrefix(s, apparmorLocalhostPrefix):
		return localhostAppArmor(strings.TrimPrefix(s, apparmorLocalhostPrefix))
	default:
		return nil, invalid("unknown AppArmor profile %q (want %s, %s or %s<name>)",
			s, apparmorRuntimeDefault, apparmorUnconfined, apparmorLocalhostPrefix)
	}
}

func localhostAppArmor(name string) (*runtimeapi.SecurityProfile, error) {
	if name == "" {
		return nil, invalid("AppArmor profile type Localhost needs a profile name")
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: name}, nil
}
