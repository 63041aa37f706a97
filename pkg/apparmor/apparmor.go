// Package apparmor is cri-shim's view of the node's AppArmor: whether the
// kernel enforces it, which profiles are loaded, and the runtime default
// profile (cri-shim-default) that containers asking for the runtime's
// default are confined by.
//
// It knows nothing of the CRI: pkg/pod maps a container's security context
// onto the OCI process.apparmorProfile with the help of a Host. The OCI
// runtime (runc, crun) applies the profile when the container's process
// execs; loading profiles into the kernel is apparmor_parser's job, which
// this package runs for the default profile only (Localhost profiles are
// the node administrator's to load).
package apparmor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNotEnabled is returned when a profile is to be loaded on a host whose
// kernel does not enforce AppArmor.
var ErrNotEnabled = errors.New("AppArmor is not enabled on this host")

// Host is one node's AppArmor: where the kernel's interfaces are mounted and
// which apparmor_parser loads profiles. The zero value is the real system;
// tests point the fields at fake trees. A Host must not be copied after
// first use.
type Host struct {
	// SysfsDir is where sysfs is mounted; default /sys.
	SysfsDir string
	// SecurityfsDir is where securityfs is mounted; default
	// /sys/kernel/security.
	SecurityfsDir string
	// ProcDir is where procfs is mounted; default /proc. It is read for the
	// label cri-shim itself runs under (see DefaultProfile).
	ProcDir string
	// Parser is the apparmor_parser binary: a path, or a name looked up in
	// PATH and then in /usr/sbin and /sbin (a service's PATH may lack the
	// sbin directories). Default apparmor_parser.
	Parser string

	enabledOnce sync.Once
	enabled     bool

	// loadMu serializes loads of the default profile; loaded says this
	// process has loaded it once already.
	loadMu sync.Mutex
	loaded bool
}

var system = &Host{}

// System is the Host of the machine cri-shim runs on, shared by the whole
// process so that Enabled is computed and the default profile loaded once.
func System() *Host { return system }

// Enabled reports whether AppArmor is usable on this system (System().Enabled()).
func Enabled() bool { return system.Enabled() }

// IsLoaded reports whether the system has a profile of that name loaded
// (System().IsLoaded).
func IsLoaded(name string) (bool, error) { return system.IsLoaded(name) }

// LoadDefault loads the default profile into the system's kernel
// (System().LoadDefault).
func LoadDefault(ctx context.Context) error { return system.LoadDefault(ctx) }

func (h *Host) sysfsDir() string      { return orDefault(h.SysfsDir, "/sys") }
func (h *Host) securityfsDir() string { return orDefault(h.SecurityfsDir, "/sys/kernel/security") }
func (h *Host) procDir() string       { return orDefault(h.ProcDir, "/proc") }
func (h *Host) parser() string        { return orDefault(h.Parser, "apparmor_parser") }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Enabled reports whether the kernel enforces AppArmor: the module says so
// and its securityfs interface is there. That is the check runc makes before
// it applies a profile, so a profile we hand to runc is one runc can apply.
// A kernel with AppArmor compiled in but switched off (apparmor=0, another
// major LSM) has no /sys/module/apparmor/parameters/enabled or says "N";
// a container without securityfs mounted has no interface to load or apply
// profiles through. The answer cannot change while the system runs, so it
// is computed once.
func (h *Host) Enabled() bool {
	h.enabledOnce.Do(func() {
		buf, err := os.ReadFile(filepath.Join(h.sysfsDir(), "module", "apparmor", "parameters", "enabled"))
		if err != nil || !bytes.HasPrefix(buf, []byte("Y")) {
			return
		}
		if _, err := os.Stat(filepath.Join(h.securityfsDir(), "apparmor")); err != nil {
			return
		}
		h.enabled = true
	})
	return h.enabled
}

// profilesFile lists the loaded profiles, one "name (mode)" a line.
func (h *Host) profilesFile() string {
	return filepath.Join(h.securityfsDir(), "apparmor", "profiles")
}

// IsLoaded reports whether a profile of exactly that name is loaded, in any
// mode (enforce, complain, ...). Names are compared whole: "foo" does not
// match a loaded "foo-bar" or the hat "foo//bar".
func (h *Host) IsLoaded(name string) (bool, error) {
	f, err := os.Open(h.profilesFile())
	if err != nil {
		return false, fmt.Errorf("list loaded AppArmor profiles: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// The mode is the last parenthesised word; a quoted profile name
		// may itself contain " (".
		if i := strings.LastIndex(line, " ("); i >= 0 {
			line = line[:i]
		}
		if line == name {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read %s: %w", h.profilesFile(), err)
	}
	return false, nil
}

// LoadDefault makes sure the default profile (DefaultProfileName) is loaded.
//
// The first call in a process always loads it, replacing a profile of the
// same name: the kernel does not give a profile's text back, so comparing
// what is loaded with what this binary would load is not possible, and a
// version file of our own could be stale (another process may have replaced
// the profile). Reloading once per start costs one parser run and
// guarantees that an upgraded cri-shim confines containers with its own
// profile; containers already confined by the old one move to the new one,
// as AppArmor replaces profiles in place.
//
// Later calls only check that the profile is still loaded and load it again
// if something removed it (apparmor_parser -R, aa-teardown), as containerd
// and CRI-O do before each container that uses their default; a container
// creation calling this costs one read of the profiles list.
func (h *Host) LoadDefault(ctx context.Context) error {
	if !h.Enabled() {
		return fmt.Errorf("load AppArmor profile %q: %w", DefaultProfileName, ErrNotEnabled)
	}
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	if h.loaded {
		ok, err := h.IsLoaded(DefaultProfileName)
		if err != nil {
			return fmt.Errorf("check AppArmor profile %q: %w", DefaultProfileName, err)
		}
		if ok {
			return nil
		}
	}
	if err := h.load(ctx, DefaultProfileName, h.DefaultProfile()); err != nil {
		return err
	}
	h.loaded = true
	return nil
}

// load replaces (or adds) the profile name with text, compiled by
// apparmor_parser from stdin. --skip-cache: the text is generated, so a
// cached binary is never worth reading, and writing one would leave files
// in the system's cache for a profile no file in /etc/apparmor.d defines.
func (h *Host) load(ctx context.Context, name, text string) error {
	parser, err := h.parserPath()
	if err != nil {
		return fmt.Errorf("load AppArmor profile %q: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, parser, "--replace", "--skip-cache")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("load AppArmor profile %q: %s --replace --skip-cache: %w: %s",
			name, parser, err, strings.TrimSpace(out.String()))
	}
	// The parser exits 0 in some failures it only warns about (no
	// securityfs to load through, for one): trust the kernel's list.
	ok, err := h.IsLoaded(name)
	if err != nil {
		return fmt.Errorf("load AppArmor profile %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("load AppArmor profile %q: %s succeeded but the profile is not in %s: %s",
			name, parser, h.profilesFile(), strings.TrimSpace(out.String()))
	}
	return nil
}

// parserPath finds apparmor_parser.
func (h *Host) parserPath() (string, error) {
	p := h.parser()
	if strings.ContainsRune(p, '/') {
		return p, nil
	}
	path, err := exec.LookPath(p)
	if err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if fi, statErr := os.Stat(filepath.Join(dir, p)); statErr == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return filepath.Join(dir, p), nil
		}
	}
	return "", fmt.Errorf("find %s (it comes with the apparmor package): %w", p, err)
}
