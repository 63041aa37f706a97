package pod

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/apparmor"
)

// fakeAppArmor is a node's AppArmor for apparmorProfile.
type fakeAppArmor struct {
	enabled   bool
	loaded    []string
	listErr   error // IsLoaded fails
	loadErr   error // LoadDefault fails
	loadCalls int
}

func (f *fakeAppArmor) Enabled() bool { return f.enabled }

func (f *fakeAppArmor) IsLoaded(name string) (bool, error) {
	if f.listErr != nil {
		return false, f.listErr
	}
	for _, l := range f.loaded {
		if l == name {
			return true, nil
		}
	}
	return false, nil
}

func (f *fakeAppArmor) LoadDefault(context.Context) error {
	f.loadCalls++
	return f.loadErr
}

func TestAppArmorProfile(t *testing.T) {
	const (
		denyWrite  = "cri-validate-apparmor-test-deny-write"
		auditWrite = "cri-validate-apparmor-test-audit-write"
		missing    = "non-existent-profile"
	)
	off := func() *fakeAppArmor { return &fakeAppArmor{} }
	on := func() *fakeAppArmor {
		return &fakeAppArmor{enabled: true, loaded: []string{apparmor.DefaultProfileName, denyWrite, auditWrite}}
	}
	field := func(typ runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
	}
	const (
		runtimeDefault = runtimeapi.SecurityProfile_RuntimeDefault
		unconfined     = runtimeapi.SecurityProfile_Unconfined
		localhost      = runtimeapi.SecurityProfile_Localhost
	)
	errList := errors.New("permission denied")
	errLoad := errors.New("apparmor_parser: syntax error")

	tests := []struct {
		desc            string
		securityContext *runtimeapi.LinuxContainerSecurityContext
		host            *fakeAppArmor
		want            string
		wantErr         error // errors.Is target; nil = success
		wantErrText     string
		wantLoads       int // LoadDefault calls
	}{
		// AppArmor off: nothing is applied, and a named profile cannot be.
		{desc: "off: nothing asked", host: off()},
		{desc: "off: nil security context", securityContext: nil, host: off()},
		{desc: "off: RuntimeDefault", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(runtimeDefault, "")}},
		{desc: "off: Unconfined", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(unconfined, "")}},
		{desc: "off: deprecated runtime/default", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}},
		{desc: "off: deprecated unconfined", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"}},
		{desc: "off: Localhost is InvalidArgument", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, denyWrite)},
			wantErr:         errdefs.ErrInvalidArgument,
			wantErrText:     `AppArmor is not enabled on this host, cannot apply profile "` + denyWrite + `"`},
		{desc: "off: deprecated localhost/ is InvalidArgument", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/" + denyWrite},
			wantErr:         errdefs.ErrInvalidArgument, wantErrText: "not enabled"},
		{desc: "off: an unknown deprecated string is still InvalidArgument", host: off(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "docker/default"},
			wantErr:         errdefs.ErrInvalidArgument},

		// AppArmor on: the runtime default.
		{desc: "on: nothing asked gets the default profile", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{},
			want:            apparmor.DefaultProfileName, wantLoads: 1},
		{desc: "on: RuntimeDefault", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(runtimeDefault, "")},
			want:            apparmor.DefaultProfileName, wantLoads: 1},
		{desc: "on: deprecated runtime/default", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"},
			want:            apparmor.DefaultProfileName, wantLoads: 1},
		{desc: "on: privileged, nothing asked: unconfined", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true},
			want:            apparmorUnconfinedProfile},
		{desc: "on: privileged RuntimeDefault: unconfined (api.proto: privileged applies no AppArmor)", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: field(runtimeDefault, "")},
			want:            apparmorUnconfinedProfile},
		{desc: "on: the default profile cannot be loaded", host: &fakeAppArmor{enabled: true, loadErr: errLoad},
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(runtimeDefault, "")},
			wantErr:         errLoad, wantLoads: 1},

		// AppArmor on: unconfined.
		{desc: "on: Unconfined", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(unconfined, "")},
			want:            apparmorUnconfinedProfile},
		{desc: "on: deprecated unconfined", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"},
			want:            apparmorUnconfinedProfile},

		// AppArmor on: Localhost.
		{desc: "on: Localhost, loaded", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, denyWrite)},
			want:            denyWrite},
		{desc: "on: Localhost ref with the localhost/ prefix, as critest sends it", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, "localhost/"+auditWrite)},
			want:            auditWrite},
		{desc: "on: deprecated localhost/<name>", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/" + denyWrite},
			want:            denyWrite},
		{desc: "on: Localhost not loaded is InvalidArgument naming it", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, "localhost/"+missing)},
			wantErr:         errdefs.ErrInvalidArgument,
			wantErrText:     `AppArmor profile "` + missing + `" is not loaded`},
		{desc: "on: deprecated localhost/<name> not loaded", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/" + missing},
			wantErr:         errdefs.ErrInvalidArgument, wantErrText: missing},
		{desc: "on: privileged still gets a Localhost profile it names", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: field(localhost, denyWrite)},
			want:            denyWrite},
		{desc: "on: Localhost without a name", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, "")},
			wantErr:         errdefs.ErrInvalidArgument},
		{desc: "on: Localhost with only the prefix", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, "localhost/")},
			wantErr:         errdefs.ErrInvalidArgument},
		{desc: "on: deprecated localhost/ without a name", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/"},
			wantErr:         errdefs.ErrInvalidArgument},
		{desc: "on: the profile list cannot be read: not the client's fault",
			host:            &fakeAppArmor{enabled: true, listErr: errList},
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(localhost, denyWrite)},
			wantErr:         errList},

		// Malformed requests.
		{desc: "on: unknown deprecated string", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "my-profile"},
			wantErr:         errdefs.ErrInvalidArgument, wantErrText: "my-profile"},
		{desc: "on: localhost_ref with RuntimeDefault (api.proto: only with Localhost)", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(runtimeDefault, denyWrite)},
			wantErr:         errdefs.ErrInvalidArgument},
		{desc: "on: localhost_ref with Unconfined", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(unconfined, denyWrite)},
			wantErr:         errdefs.ErrInvalidArgument},
		{desc: "on: unknown profile type", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: field(7, "")},
			wantErr:         errdefs.ErrInvalidArgument},

		// The field wins over the deprecated string.
		{desc: "field Localhost wins over a missing deprecated profile (critest: prefer new field)", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{
				ApparmorProfile: "localhost/" + missing, Apparmor: field(localhost, "localhost/"+denyWrite)},
			want: denyWrite},
		{desc: "field and deprecated string both missing: fails", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{
				ApparmorProfile: "localhost/" + missing, Apparmor: field(localhost, "localhost/"+missing)},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "field Unconfined wins over a deprecated localhost profile", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{
				ApparmorProfile: "localhost/" + denyWrite, Apparmor: field(unconfined, "")},
			want: apparmorUnconfinedProfile},
		{desc: "field RuntimeDefault wins over a malformed deprecated string", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{
				ApparmorProfile: "bogus", Apparmor: field(runtimeDefault, "")},
			want: apparmor.DefaultProfileName, wantLoads: 1},
		{desc: "field Localhost wins over deprecated unconfined", host: on(),
			securityContext: &runtimeapi.LinuxContainerSecurityContext{
				ApparmorProfile: "unconfined", Apparmor: field(localhost, auditWrite)},
			want: auditWrite},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := apparmorProfile(context.Background(), tt.securityContext, tt.host)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("apparmorProfile() error = %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("apparmorProfile() error = %v, want one wrapping %v", err, tt.wantErr)
			case tt.wantErr != nil && tt.wantErr != errdefs.ErrInvalidArgument && errdefs.IsInvalidArgument(err):
				t.Errorf("apparmorProfile() error %v is InvalidArgument, but the node is at fault", err)
			case err != nil && !strings.Contains(err.Error(), tt.wantErrText):
				t.Errorf("apparmorProfile() error = %q, want it to contain %q", err, tt.wantErrText)
			}
			if got != tt.want {
				t.Errorf("apparmorProfile() = %q, want %q", got, tt.want)
			}
			if tt.host.loadCalls != tt.wantLoads {
				t.Errorf("LoadDefault called %d times, want %d", tt.host.loadCalls, tt.wantLoads)
			}
		})
	}
}
