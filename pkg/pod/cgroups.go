package pod

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupDir is the directory of a container's cgroup in one v1 hierarchy
// (ctrl) or, on v2, in the unified tree (ctrl ignored). Only cgroupfs
// paths are resolved; a systemd path is left to the runtime.
func (m *Manager) cgroupDir(sandboxCgroup, id, ctrl string) string {
	p := cgroupsPath(m.cfg.CgroupDriver, sandboxCgroup, id)
	if strings.Contains(p, ":") {
		return ""
	}
	if hostCgroups().v2 {
		return filepath.Join("/sys/fs/cgroup", p)
	}
	return filepath.Join("/sys/fs/cgroup", ctrl, p)
}

// oomKilled reports whether the kernel's OOM killer killed a process of the
// container's cgroup: read at exit, before the runtime removes the cgroup.
func (m *Manager) oomKilled(c *Container) bool {
	sb, ok := m.sandboxes.get(c.SandboxID)
	if !ok {
		return false
	}
	dir := m.cgroupDir(sb.Cgroup, c.ID, "memory")
	if dir == "" {
		return false
	}
	file := "memory.oom_control"
	if hostCgroups().v2 {
		file = "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

// removeCgroup removes the (empty) cgroup of a container or pause whose
// runtime state is gone, in every hierarchy; the runtime removes it itself
// on delete, but not after a reboot that kept the cgroup tree (a simulated
// one) or a crash between its steps.
func (m *Manager) removeCgroup(sandboxCgroup, id string) {
	p := cgroupsPath(m.cfg.CgroupDriver, sandboxCgroup, id)
	if strings.Contains(p, ":") {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", p))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", p))
	for _, d := range dirs {
		os.Remove(d) // rmdir; a cgroup with processes refuses, which is right
	}
}
