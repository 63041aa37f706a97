package pod

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
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
	Cgroup *crt.CgroupStats
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
// read of each object per MetricsMaxAge however many scrapers ask: scrapes
// take turns (a second one waits for the first and reuses its samples).
type sampleCache struct {
	mu         sync.Mutex
	pods       map[string]*PodSample
	containers map[string]*ContainerSample
	// fsDevice is the image filesystem's device name, read once.
	fsOnce   sync.Once
	fsDevice string
}

// Metrics samples every ready sandbox and its running containers (reusing
// samples younger than maxAge), reading up to a few objects in parallel.
// Containers that are gone by the time they are read are left out; samples
// of objects no longer listed are dropped.
func (m *Manager) Metrics(maxAge time.Duration) []PodMetrics {
	c := &m.samples
	c.mu.Lock()
	defer c.mu.Unlock()
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
		if s := c.pods[pm.Sandbox.ID]; s != nil && fresh(s.At) {
			pm.Sample = s
		} else {
			run(func() { pm.Sample = m.samplePod(pm.Sandbox) })
		}
		for j := range pm.Containers {
			cm := &pm.Containers[j]
			if s := c.containers[cm.Container.ID]; s != nil && fresh(s.At) {
				cm.Sample = s
				continue
			}
			run(func() { cm.Sample = m.sampleContainer(pm.Sandbox, cm.Container) })
		}
	}
	wg.Wait()
	c.pods, c.containers = make(map[string]*PodSample, len(out)), map[string]*ContainerSample{}
	for i := range out {
		pm := &out[i]
		c.pods[pm.Sandbox.ID] = pm.Sample
		live := pm.Containers[:0]
		for _, cm := range pm.Containers {
			if cm.Sample != nil {
				c.containers[cm.Container.ID] = cm.Sample
				live = append(live, cm)
			}
		}
		pm.Containers = live
	}
	return out
}

func (m *Manager) samplePod(sb *Sandbox) *PodSample {
	s := &PodSample{At: time.Now()}
	if path, err := sb.statsCgroupPath(); err == nil {
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

// sampleContainer reads a running container; nil when its cgroup is gone
// (it exited meanwhile).
func (m *Manager) sampleContainer(sb *Sandbox, c *Container) *ContainerSample {
	s := &ContainerSample{At: time.Now()}
	path, err := sb.cgroup(c.ID).Path()
	if err != nil {
		return nil
	}
	if s.Cgroup, err = crt.ReadCgroupStats(path); err != nil {
		return nil
	}
	if spec, err := crt.ReadCgroupSpec(crt.CgroupRoot, path); err == nil {
		s.Spec = &spec
	}
	if ps, err := crt.ReadProcessStats(crt.CgroupRoot, "/proc", path); err == nil {
		s.Procs = &ps
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
	m.samples.fsOnce.Do(func() {
		var s unix.Stat_t
		if err := unix.Stat(dir, &s); err == nil {
			m.samples.fsDevice = mountSource(unix.Major(s.Dev), unix.Minor(s.Dev))
		}
	})
	return FsInfo{Device: m.samples.fsDevice, CapacityBytes: st.Blocks * uint64(st.Bsize), Inodes: st.Files,
		InodesFree: st.Ffree}, nil
}

// blockDevices caches BlockDeviceName: a device number names one device
// while it exists.
var blockDevices sync.Map // "major:minor" -> name

// BlockDeviceName is a block device's /dev name, as the kernel gives it in
// /sys/dev/block/MAJOR:MINOR/uevent (DEVNAME, e.g. /dev/vda), else
// "major:minor".
func BlockDeviceName(major, minor uint64) string {
	id := fmt.Sprintf("%d:%d", major, minor)
	if n, ok := blockDevices.Load(id); ok {
		return n.(string)
	}
	name := id
	if b, err := os.ReadFile(filepath.Join("/sys/dev/block", id, "uevent")); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "DEVNAME="); ok && v != "" {
				name = "/dev/" + v
			}
		}
	}
	blockDevices.Store(id, name)
	return name
}

// mountSource is the source of the first mount of major:minor in
// /proc/self/mountinfo (e.g. /dev/vda1, or overlay), or "major:minor": a
// filesystem's device as df names it.
func mountSource(major, minor uint32) string {
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
