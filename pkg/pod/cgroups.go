package pod

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-shim/cri-shim/pkg/monitor"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// cgroup is the cgroup of the pause (id = the sandbox's ID) or of a
// container of this pod, under the driver the pod was made with.
func (sb *Sandbox) cgroup(id string) runtime.Cgroup {
	driver := sb.CgroupDriver
	if driver == "" {
		driver = runtime.CgroupfsDriver
	}
	return runtime.Cgroup{Driver: driver, Parent: sb.Cgroup, ID: id}
}

// statsCgroupPath is the cgroup a pod's statistics come from: the pod's own
// (the parent kubelet gave), else the pause's (a crictl user's pod shares
// the default parent with others).
func (sb *Sandbox) statsCgroupPath() (string, error) {
	cg := sb.cgroup(sb.ID)
	if sb.Cgroup == "" {
		return cg.Path()
	}
	return cg.ParentPath()
}

// withCgroup sets the spec's cgroupsPath. The parent was validated when the
// pod was made, so an error here is a record from elsewhere.
func withCgroup(cg runtime.Cgroup) runtime.SpecOpt {
	return func(s *specs.Spec) error {
		p, err := cg.OCIPath()
		if err != nil {
			return err
		}
		return runtime.WithCgroupsPath(p)(s)
	}
}

// memoryCgroupDir is the directory of a container's memory cgroup on this
// host (the v2 directory, or the v1 memory hierarchy's), where OOM kills are
// counted; "" if the parent is not valid.
func memoryCgroupDir(cg runtime.Cgroup) string {
	dir, err := cg.Dir(runtime.CgroupRoot, "memory")
	if err != nil {
		return ""
	}
	return dir
}

// oomKilled reports whether the kernel's OOM killer killed a process of the
// container's cgroup, for a cgroup that outlives its processes (cgroupfs);
// the monitor follows the others while they run (monitor.Exit.OOMKilled).
func (m *Manager) oomKilled(c *Container) bool {
	sb, ok := m.sandboxes.get(c.SandboxID)
	if !ok {
		return false
	}
	return monitor.OOMKills(memoryCgroupDir(sb.cgroup(c.ID))) > 0
}

// removeCgroup removes the (empty) cgroup of a container or pause whose
// runtime state is gone, in every hierarchy and under either driver. The
// runtime removes it itself on delete (systemd when a scope empties), but
// not after a reboot that kept the cgroup tree (a simulated one) or a crash
// between its steps.
func (m *Manager) removeCgroup(sb *Sandbox, id string) {
	dirs, err := sb.cgroup(id).Dirs(runtime.CgroupRoot)
	if err != nil {
		return
	}
	for _, d := range dirs {
		os.Remove(d) // rmdir; a cgroup with processes refuses, which is right
	}
}
