package apparmor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeHost is a sysfs, securityfs and procfs tree in a temp dir.
type fakeHost struct {
	dir        string
	sysfs      string
	securityfs string
	proc       string
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	return &fakeHost{dir: dir, sysfs: filepath.Join(dir, "sys"),
		securityfs: filepath.Join(dir, "security"), proc: filepath.Join(dir, "proc")}
}

func (f *fakeHost) host() *Host {
	return &Host{SysfsDir: f.sysfs, SecurityfsDir: f.securityfs, ProcDir: f.proc,
		Parser: filepath.Join(f.dir, "no-parser")}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeHost) setEnabled(t *testing.T, value string) {
	writeFile(t, filepath.Join(f.sysfs, "module/apparmor/parameters/enabled"), value)
}

func (f *fakeHost) setSecurityfs(t *testing.T) {
	if err := os.MkdirAll(filepath.Join(f.securityfs, "apparmor"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeHost) setProfiles(t *testing.T, content string) {
	writeFile(t, filepath.Join(f.securityfs, "apparmor/profiles"), content)
}

func TestAppArmorEnabled(t *testing.T) {
	tests := []struct {
		desc       string
		enabled    string // content of parameters/enabled; "" = no file
		securityfs bool
		want       bool
	}{
		{desc: "module on, securityfs mounted", enabled: "Y\n", securityfs: true, want: true},
		{desc: "module on without newline", enabled: "Y", securityfs: true, want: true},
		{desc: "module off (apparmor=0)", enabled: "N\n", securityfs: true, want: false},
		{desc: "no apparmor module (this host: another LSM or none)", securityfs: true, want: false},
		{desc: "module on but no securityfs interface (a container without securityfs)", enabled: "Y\n", want: false},
		{desc: "empty parameter file", enabled: "\n", securityfs: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := newFakeHost(t)
			if tt.enabled != "" {
				f.setEnabled(t, tt.enabled)
			}
			if tt.securityfs {
				f.setSecurityfs(t)
			}
			if got := f.host().Enabled(); got != tt.want {
				t.Errorf("Enabled() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAppArmorEnabledComputedOnce(t *testing.T) {
	f := newFakeHost(t)
	f.setEnabled(t, "Y\n")
	f.setSecurityfs(t)
	h := f.host()
	if !h.Enabled() {
		t.Fatal("Enabled() = false on an enabled host")
	}
	f.setEnabled(t, "N\n")
	if !h.Enabled() {
		t.Error("Enabled() changed after the first call; it is computed once")
	}
}

func TestAppArmorIsLoaded(t *testing.T) {
	const profiles = `cri-shim-default (enforce)
cri-validate-apparmor-test-audit-write (complain)
/usr/sbin/ntpd (enforce)
parent//hat (enforce)
foo-bar (enforce)
runc (unconfined)
`
	tests := []struct {
		desc     string
		profiles string // "" = no profiles file
		name     string
		want     bool
		wantErr  bool
	}{
		{desc: "enforced profile", profiles: profiles, name: "cri-shim-default", want: true},
		{desc: "complain mode counts as loaded", profiles: profiles, name: "cri-validate-apparmor-test-audit-write", want: true},
		{desc: "unconfined-mode profile (AppArmor 4)", profiles: profiles, name: "runc", want: true},
		{desc: "path-named profile", profiles: profiles, name: "/usr/sbin/ntpd", want: true},
		{desc: "hat by its full name", profiles: profiles, name: "parent//hat", want: true},
		{desc: "a prefix of a loaded name is not loaded", profiles: profiles, name: "foo", want: false},
		{desc: "the parent of a hat is not loaded by the hat", profiles: profiles, name: "parent", want: false},
		{desc: "absent", profiles: profiles, name: "non-existent-profile", want: false},
		{desc: "nothing loaded", profiles: "\n", name: "cri-shim-default", want: false},
		{desc: "no profiles file", name: "cri-shim-default", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := newFakeHost(t)
			if tt.profiles != "" {
				f.setProfiles(t, tt.profiles)
			}
			got, err := f.host().IsLoaded(tt.name)
			if (err != nil) != tt.wantErr {
				t.Fatalf("IsLoaded(%q) error = %v, wantErr %v", tt.name, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("IsLoaded error %v does not wrap the cause", err)
			}
			if got != tt.want {
				t.Errorf("IsLoaded(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// fakeParser writes a shell script standing in for apparmor_parser. It
// records its arguments and stdin and counts its runs in dir; on success it
// appends the profile to the fake securityfs list (when load is true),
// otherwise it prints stderr and exits with code.
func fakeParser(t *testing.T, f *fakeHost, load bool, stderr string, code int) string {
	t.Helper()
	script := "#!/bin/sh\n" +
		"echo \"$@\" > '" + f.dir + "/args'\n" +
		"cat > '" + f.dir + "/stdin'\n" +
		"echo run >> '" + f.dir + "/runs'\n"
	if stderr != "" {
		script += "echo '" + stderr + "' >&2\n"
	}
	if load {
		script += "echo 'cri-shim-default (enforce)' >> '" + filepath.Join(f.securityfs, "apparmor/profiles") + "'\n"
	}
	script += "exit " + strconv.Itoa(code) + "\n"
	path := filepath.Join(f.dir, "apparmor_parser")
	writeFile(t, path, script)
	return path
}

func runs(t *testing.T, f *fakeHost) int {
	data, err := os.ReadFile(filepath.Join(f.dir, "runs"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "run\n")
}

func TestAppArmorLoadDefault(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("the fake apparmor_parser is a shell script and there is no sh")
	}
	tests := []struct {
		desc    string
		enabled bool
		parser  func(t *testing.T, f *fakeHost) string
		wantErr string // substring; "" = success
	}{
		{desc: "loads through the parser",
			enabled: true,
			parser:  func(t *testing.T, f *fakeHost) string { return fakeParser(t, f, true, "", 0) }},
		{desc: "parser warnings on stderr are not failures",
			enabled: true,
			parser: func(t *testing.T, f *fakeHost) string {
				return fakeParser(t, f, true, "Warning: unable to find a suitable fs", 0)
			}},
		{desc: "parser failure carries its stderr",
			enabled: true,
			parser: func(t *testing.T, f *fakeHost) string {
				return fakeParser(t, f, false, "AppArmor parser error at line 7: syntax error", 1)
			},
			wantErr: "AppArmor parser error at line 7: syntax error"},
		{desc: "parser success without a loaded profile is a failure",
			enabled: true,
			parser:  func(t *testing.T, f *fakeHost) string { return fakeParser(t, f, false, "", 0) },
			wantErr: "succeeded but the profile is not in"},
		{desc: "no parser",
			enabled: true,
			parser:  func(t *testing.T, f *fakeHost) string { return filepath.Join(f.dir, "missing", "apparmor_parser") },
			wantErr: "apparmor_parser"},
		{desc: "AppArmor off: nothing to load into",
			parser:  func(t *testing.T, f *fakeHost) string { return fakeParser(t, f, true, "", 0) },
			wantErr: ErrNotEnabled.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := newFakeHost(t)
			if tt.enabled {
				f.setEnabled(t, "Y\n")
				f.setSecurityfs(t)
				f.setProfiles(t, "")
			}
			h := f.host()
			h.Parser = tt.parser(t, f)
			err := h.LoadDefault(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadDefault() error = %v, want one containing %q", err, tt.wantErr)
				}
				if !tt.enabled && !errors.Is(err, ErrNotEnabled) {
					t.Errorf("LoadDefault() error %v does not wrap ErrNotEnabled", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadDefault() = %v", err)
			}
			args, _ := os.ReadFile(filepath.Join(f.dir, "args"))
			if got := strings.TrimSpace(string(args)); got != "--replace --skip-cache" {
				t.Errorf("parser args = %q, want %q", got, "--replace --skip-cache")
			}
			stdin, _ := os.ReadFile(filepath.Join(f.dir, "stdin"))
			if string(stdin) != h.DefaultProfile() {
				t.Errorf("parser stdin is not the default profile:\n%s", stdin)
			}
		})
	}
}

func TestAppArmorLoadDefaultOncePerProcess(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("the fake apparmor_parser is a shell script and there is no sh")
	}
	f := newFakeHost(t)
	f.setEnabled(t, "Y\n")
	f.setSecurityfs(t)
	// Loaded by an earlier cri-shim: the first load replaces it anyway.
	f.setProfiles(t, "cri-shim-default (enforce)\n")
	h := f.host()
	h.Parser = fakeParser(t, f, true, "", 0)
	ctx := context.Background()

	if err := h.LoadDefault(ctx); err != nil {
		t.Fatal(err)
	}
	if n := runs(t, f); n != 1 {
		t.Fatalf("first LoadDefault ran the parser %d times, want 1 (replace what a previous run loaded)", n)
	}
	if err := h.LoadDefault(ctx); err != nil {
		t.Fatal(err)
	}
	if n := runs(t, f); n != 1 {
		t.Fatalf("second LoadDefault ran the parser again (%d runs) though the profile is loaded", n)
	}
	// Someone unloaded it (apparmor_parser -R, aa-teardown): load again.
	f.setProfiles(t, "other (enforce)\n")
	if err := h.LoadDefault(ctx); err != nil {
		t.Fatal(err)
	}
	if n := runs(t, f); n != 2 {
		t.Fatalf("LoadDefault after the profile was removed: %d parser runs, want 2", n)
	}
}

func TestAppArmorParserPath(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc    string
		parser  string
		want    string
		wantErr bool
	}{
		{desc: "a path is used as given", parser: filepath.Join(dir, "apparmor_parser"), want: filepath.Join(dir, "apparmor_parser")},
		{desc: "a name nowhere to be found", parser: "cri-shim-no-such-parser", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := (&Host{Parser: tt.parser}).parserPath()
			if (err != nil) != tt.wantErr {
				t.Fatalf("parserPath() error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, exec.ErrNotFound) {
				t.Errorf("parserPath() error %v does not wrap exec.ErrNotFound", err)
			}
			if got != tt.want {
				t.Errorf("parserPath() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAppArmorLoadIntoKernel loads the default profile's text, under a
// name of its own, into the running kernel and removes it again. It needs
// a kernel with AppArmor on, apparmor_parser and root: the node in hack/vm
// has all three.
func TestAppArmorLoadIntoKernel(t *testing.T) {
	h := &Host{}
	if !h.Enabled() {
		t.Skip("AppArmor is not enabled in this host's kernel (/sys/module/apparmor/parameters/enabled is not Y, " +
			"or securityfs has no apparmor directory), so no profile can be loaded: run this in hack/vm, where it is on")
	}
	parser, err := h.parserPath()
	if err != nil {
		t.Skipf("AppArmor is on but apparmor_parser is not installed (apt-get install apparmor): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("loading an AppArmor profile needs root")
	}
	name := "cri-shim-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	text, err := renderProfile(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.load(ctx, name, text); err != nil {
		t.Fatalf("load the default profile into the kernel: %v", err)
	}
	t.Cleanup(func() {
		cmd := exec.Command(parser, "--remove", "--skip-cache")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("remove test profile %s: %v: %s", name, err, out)
		}
	})
	ok, err := h.IsLoaded(name)
	if err != nil || !ok {
		t.Fatalf("IsLoaded(%q) = %v, %v after loading it", name, ok, err)
	}
	// Loading again replaces it in place.
	if err := h.load(ctx, name, text); err != nil {
		t.Fatalf("replace the loaded profile: %v", err)
	}
}
