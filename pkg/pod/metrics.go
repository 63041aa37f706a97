package pod

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	crt "github.com/cri-shim/cri-shim/pkg/runtime"
)

// MetricsMaxAge is how old a cached metrics sample may be before a scrape
// reads the object again: two scrapers (kubelet's /metrics/cadvisor and a
// second Prometheus, or the list and the stream RPC) within it share one
// read of the cgroup files, and nothing served is older than this.
const MetricsMaxAge = time.Second

// ContainerSample is one reading of everything the metrics of a running
// container report.
type ContainerSample struct {
	At     time.Time
	Cgroup *crt.CgroupStats // nil: the cgroup could not be read
	Spec   *crt.CgroupSpec
	Procs  *crt.ProcessStats
	// NoFile is the soft RLIMIT_NOFILE of the container's init (-1:
	// unlimited); HaveNoFile says it was read.
	NoFile     int64
	HaveNoFile bool
	// WritableBytes and WritableInodes are the container's own layer.
	WritableBytes, WritableInodes uint64
	HaveWritable                  bool
}

// PodSample is one reading of a sandbox: its cgroup (as PodStats picks it)
// and its interfaces.
type PodSample struct {
	At         time.Time
	Cgroup     *crt.CgroupStats
	Spec       *crt.CgroupSpec
	Interfaces []InterfaceStats
}

// PodMetrics is a ready sandbox with its running containers, each with a
// sample no older than the age asked for.
type PodMetrics struct {
	Sandbox    *Sandbox
	Sample     *PodSample
	Containers []ContainerMetrics
}

// ContainerMetrics is a running container and its sample.
type ContainerMetrics struct {
	Container *Container
	Sample    *ContainerSample
}

// FsInfo describes the filesystem container writable layers live on.
type FsInfo struct {
	Device                            string
	CapacityBytes, Inodes, InodesFree uint64
}

// sampleCache keeps the newest sample per object, so a scrape costs one
// read of each object per MetricsMaxAge however many scrapers ask.
type sampleCache struct {
	mu         sync.Mutex
	pods       map[string]*PodSample
	containers map[string]*ContainerSample
}

// Metrics samples every ready sandbox and its running containers (reusing
// samples younger than maxAge), reading up to a few objects in parallel.
// Objects that vanish while read are left out; samples of objects no
// longer listed are dropped.
func (m *Manager) Metrics(maxAge time.Duration) []PodMetrics {
	now := time.Now()
	byPod := map[string][]*Container{}
	for _, c := range m.containers.list() {
		if c.State == ContainerRunning {
			byPod[c.SandboxID] = append(byPod[c.SandboxID], c)
		}
	}
	var out []PodMetrics
	for _, sb := range m.sandboxes.list() {
		if sb.State != SandboxReady {
			continue
		}
		pm := PodMetrics{Sandbox: sb}
		for _, c := range byPod[sb.ID] {
			pm.Containers = append(pm.Containers, ContainerMetrics{Container: c})
		}
		out = append(out, pm)
	}

	c := &m.samples
	c.mu.Lock()
	oldPods, oldContainers := c.pods, c.containers
	c.mu.Unlock()
	pods := make(map[string]*PodSample, len(out))
	containers := map[string]*ContainerSample{}
	sem := make(chan struct{}, 2*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	run := func(f func()) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f()
		}()
	}
	fresh := func(at time.Time) bool { return now.Sub(at) < maxAge }
	for i := range out {
		pm := &out[i]
		if s := oldPods[pm.Sandbox.ID]; s != nil && fresh(s.At) {
			pm.Sample = s
		} else {
			run(func() { pm.Sample = m.samplePod(pm.Sandbox) })
		}
		for j := range pm.Containers {
			cm := &pm.Containers[j]
			if s := oldContainers[cm.Container.ID]; s != nil && fresh(s.At) {
				cm.Sample = s
				continue
			}
			run(func() { cm.Sample = m.sampleContainer(pm.Sandbox, cm.Container) })
		}
	}
	wg.Wait()
	for _, pm := range out {
		pods[pm.Sandbox.ID] = pm.Sample
		for _, cm := range pm.Containers {
			containers[cm.Container.ID] = cm.Sample
		}
	}
	c.mu.Lock()
	c.pods, c.containers = pods, containers
	c.mu.Unlock()
	return out
}

func (m *Manager) samplePod(sb *Sandbox) *PodSample {
	s := &PodSample{At: time.Now()}
	// The pod's own cgroup when kubelet gave one, else the pause's (as
	// PodStats).
	cg := sb.cgroup(sb.ID)
	path, err := cg.ParentPath()
	if sb.Cgroup == "" {
		path, err = cg.Path()
	}
	if err == nil {
		if st, err := crt.ReadCgroupStats(path); err == nil {
			s.Cgroup = st
		}
		if spec, err := crt.ReadCgroupSpec(crt.CgroupRoot, path); err == nil {
			s.Spec = &spec
		}
	}
	if sb.NetNS != "" {
		s.Interfaces, _ = interfaceStats(sb.NetNS)
	}
	return s
}

func (m *Manager) sampleContainer(sb *Sandbox, c *Container) *ContainerSample {
	s := &ContainerSample{At: time.Now()}
	if path, err := sb.cgroup(c.ID).Path(); err == nil {
		if st, err := crt.ReadCgroupStats(path); err == nil {
			s.Cgroup = st
		}
		if spec, err := crt.ReadCgroupSpec(crt.CgroupRoot, path); err == nil {
			s.Spec = &spec
		}
		if ps, err := crt.ReadProcessStats(crt.CgroupRoot, "/proc", path); err == nil {
			s.Procs = &ps
		}
	}
	if c.Pid > 0 {
		if n, err := crt.SoftNoFile("/proc", c.Pid); err == nil {
			s.NoFile, s.HaveNoFile = n, true
		}
	}
	if m.cfg.Images != nil {
		if b, i, err := m.cfg.Images.RootfsUsage(c.ID); err == nil {
			s.WritableBytes, s.WritableInodes, s.HaveWritable = b, i, true
		}
	}
	return s
}

// WritableFs describes the filesystem of the image store (container
// writable layers live there): its device as /proc/self/mountinfo names it
// and its size.
func (m *Manager) WritableFs() (FsInfo, error) {
	dir := m.cfg.ImageFsMountpoint
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return FsInfo{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	info := FsInfo{CapacityBytes: st.Blocks * uint64(st.Bsize), Inodes: st.Files, InodesFree: st.Ffree}
	var s unix.Stat_t
	if err := unix.Stat(dir, &s); err != nil {
		return FsInfo{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	info.Device = DeviceName(unix.Major(s.Dev), unix.Minor(s.Dev))
	return info, nil
}

// DeviceName is the source of the first mount of major:minor in
// /proc/self/mountinfo (e.g. /dev/vda1), or "major:minor".
func DeviceName(major, minor uint32) string {
	id := fmt.Sprintf("%d:%d", major, minor)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return id
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != id {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				return fields[i+2]
			}
		}
	}
	return id
}
