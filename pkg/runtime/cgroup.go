package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// The cgroup drivers. kubelet takes the one in use from RuntimeConfig
// (KubeletCgroupDriverFromCRI), so this choice is the node's.
const (
	// CgroupfsDriver: cgroups are directories the runtime makes itself.
	CgroupfsDriver = "cgroupfs"
	// SystemdDriver: every container is a transient systemd scope inside
	// its pod's slice, made by the OCI runtime (--systemd-cgroup) through
	// systemd, the owner of the cgroup tree on such a host.
	SystemdDriver = "systemd"
)

// Defaults for a pod that names no cgroup parent (crictl does not; kubelet
// always does).
const (
	DefaultCgroupfsParent = "/cri-shim"
	DefaultSystemdParent  = "system.slice"
	// systemdScopePrefix is the middle part of "slice:prefix:name": the
	// scope of container ID is "cri-shim-ID.scope".
	systemdScopePrefix = "cri-shim"
)

// CgroupRoot is where the cgroup hierarchies are mounted.
const CgroupRoot = "/sys/fs/cgroup"

// ErrInvalidCgroupParent is a cgroup parent that the driver in use cannot
// place a container under.
var ErrInvalidCgroupParent = errors.New("invalid cgroup parent")

// DetectCgroupDriver is the driver a node uses when none is configured:
// systemd when systemd is the init system (it owns the cgroup tree then, and
// kubelet and the OCI runtime must go through it), else cgroupfs. This is
// the test sd_booted(3) makes.
func DetectCgroupDriver() string {
	if fi, err := os.Lstat("/run/systemd/system"); err == nil && fi.IsDir() {
		return SystemdDriver
	}
	return CgroupfsDriver
}

// Cgroup names the cgroup of one container (or pause) under a pod's cgroup
// parent. It is the one place that turns the CRI's cgroup parent and an ID
// into the OCI runtime's cgroupsPath and into a path in the cgroup
// filesystem: creation, stats, OOM detection, cleanup and recovery all go
// through it, for both drivers.
type Cgroup struct {
	// Driver is CgroupfsDriver or SystemdDriver; empty means cgroupfs
	// (records written before the driver was recorded).
	Driver string
	// Parent is the pod's cgroup parent as the CRI gives it: a cgroupfs
	// path ("/kubepods/burstable/pod<uid>"), or for systemd a slice, whole
	// ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice",
	// what kubelet sends) or by name ("kubepods-burstable-pod<uid>.slice").
	Parent string
	// ID is the container's ID.
	ID string
}

func (c Cgroup) systemd() bool { return c.Driver == SystemdDriver }

// parentSlice is the systemd slice unit of the parent: the last element of
// the path, which names the whole slice hierarchy in systemd.
func (c Cgroup) parentSlice() (string, error) {
	p := c.Parent
	if p == "" {
		p = DefaultSystemdParent
	}
	slice := path.Base(p)
	if _, err := ExpandSlice(slice); err != nil {
		return "", fmt.Errorf("%w: %q under the systemd cgroup driver: %w", ErrInvalidCgroupParent, c.Parent, err)
	}
	return slice, nil
}

// Validate reports whether the parent can hold containers under the driver:
// a clean path without ".." for cgroupfs, a valid slice for systemd.
func (c Cgroup) Validate() error {
	if c.systemd() {
		_, err := c.parentSlice()
		return err
	}
	if strings.ContainsRune(c.Parent, 0) {
		return fmt.Errorf("%w: %q contains a NUL byte", ErrInvalidCgroupParent, c.Parent)
	}
	for _, elem := range strings.Split(c.Parent, "/") {
		if elem == ".." {
			return fmt.Errorf("%w: %q leaves the cgroup tree (\"..\")", ErrInvalidCgroupParent, c.Parent)
		}
	}
	return nil
}

// OCIPath is the spec's linux.cgroupsPath: "slice:cri-shim:ID" for systemd
// (runc and crun then make the scope cri-shim-ID.scope inside the slice), a
// path for cgroupfs.
func (c Cgroup) OCIPath() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	if c.systemd() {
		slice, _ := c.parentSlice()
		return slice + ":" + systemdScopePrefix + ":" + c.ID, nil
	}
	return c.cgroupfsParent() + "/" + c.ID, nil
}

func (c Cgroup) cgroupfsParent() string {
	p := c.Parent
	if p == "" {
		p = DefaultCgroupfsParent
	}
	p = filepath.Clean("/" + p)
	if p == "/" {
		return ""
	}
	return p
}

// Path is the container's cgroup relative to a hierarchy's root
// ("/kubepods.slice/.../cri-shim-ID.scope", "/cri-shim/ID"): the same in
// every v1 hierarchy and in the v2 tree.
func (c Cgroup) Path() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	if c.systemd() {
		parent, err := c.ParentPath()
		if err != nil {
			return "", err
		}
		return path.Join(parent, systemdScopePrefix+"-"+c.ID+".scope"), nil
	}
	return c.cgroupfsParent() + "/" + c.ID, nil
}

// ParentPath is the pod's cgroup (the parent) relative to a hierarchy's
// root: what pod-level stats read.
func (c Cgroup) ParentPath() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	if c.systemd() {
		slice, _ := c.parentSlice()
		return ExpandSlice(slice)
	}
	p := c.cgroupfsParent()
	if p == "" {
		p = "/"
	}
	return p, nil
}

// Dirs are the container's cgroup directories on this host: one in the v2
// tree, or one per mounted v1 hierarchy. root is CgroupRoot except in tests.
func (c Cgroup) Dirs(root string) ([]string, error) {
	p, err := c.Path()
	if err != nil {
		return nil, err
	}
	if IsCgroup2(root) {
		return []string{filepath.Join(root, p)}, nil
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		// Symlinks (cpu -> cpu,cpuacct) name a hierarchy twice.
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(root, e.Name(), p))
		}
	}
	return dirs, nil
}

// Dir is the container's directory for one controller: the v2 directory,
// or the v1 hierarchy that holds ctrl.
func (c Cgroup) Dir(root, ctrl string) (string, error) {
	p, err := c.Path()
	if err != nil {
		return "", err
	}
	if IsCgroup2(root) {
		return filepath.Join(root, p), nil
	}
	return filepath.Join(root, ctrl, p), nil
}

// IsCgroup2 reports whether root is a cgroup v2 (unified) mount.
func IsCgroup2(root string) bool {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return err == nil
}

// ExpandSlice turns a systemd slice name into its path in the cgroup tree:
// "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice", "-.slice" the root.
// The rules are systemd's (systemd.slice(5)): a slice's name is its parent's
// name plus "-" and its own part, parts are not empty, and no "/".
func ExpandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" {
		return "", fmt.Errorf("%q is not a systemd slice name (NAME.slice)", slice)
	}
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("slice name %q contains a /", slice)
	}
	if name == "-" {
		return "/", nil
	}
	var b strings.Builder
	prefix := ""
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("slice name %q has an empty part", slice)
		}
		b.WriteString("/" + prefix + part + ".slice")
		prefix += part + "-"
	}
	return b.String(), nil
}
