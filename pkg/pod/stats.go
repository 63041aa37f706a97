package pod

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// ContainerStats are a container's resource usage.
type ContainerStats struct {
	Cgroup *runtime.CgroupStats
	// NanoCores is the CPU rate since the previous sample (0 on the first).
	NanoCores uint64
	// WritableBytes and WritableInodes are the container's own layer.
	WritableBytes, WritableInodes uint64
	WritableMountpoint            string
}

// PodStats are a sandbox's resource usage.
type PodStats struct {
	Cgroup     *runtime.CgroupStats
	NanoCores  uint64
	Interfaces []InterfaceStats
	Containers map[string]*ContainerStats
}

// InterfaceStats are the counters of one pod interface.
type InterfaceStats struct {
	Name                               string
	RxBytes, RxErrors, TxBytes, TxErrs uint64
	RxPackets, RxDropped               uint64
	TxPackets, TxDropped               uint64
}

// cpuRates remembers the previous CPU sample per cgroup to compute rates.
type cpuRates struct {
	mu   sync.Mutex
	prev map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

func (r *cpuRates) rate(key string, s *runtime.CgroupStats) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		r.prev = map[string]cpuSample{}
	}
	p, ok := r.prev[key]
	r.prev[key] = cpuSample{s.Time, s.CPUUsage}
	if !ok || !s.Time.After(p.at) || s.CPUUsage < p.usage {
		return 0
	}
	return uint64(float64(s.CPUUsage-p.usage) / float64(s.Time.Sub(p.at).Nanoseconds()) * 1e9)
}

func (r *cpuRates) forget(key string) {
	r.mu.Lock()
	delete(r.prev, key)
	r.mu.Unlock()
}

// ContainerStats reads a container's usage from its cgroup and its
// writable layer. A container without a cgroup (exited and cleaned up)
// has no CPU/memory figures.
func (m *Manager) ContainerStats(id string) (*ContainerStats, error) {
	c, ok := m.containers.get(id)
	if !ok {
		return nil, notFound("container", id)
	}
	sb, _ := m.sandboxes.get(c.SandboxID)
	out := &ContainerStats{}
	if sb != nil && c.State == ContainerRunning {
		path, err := sb.cgroup(id).Path()
		var cg *runtime.CgroupStats
		if err == nil {
			cg, err = runtime.ReadCgroupStats(path)
		}
		if err == nil {
			out.Cgroup = cg
			out.NanoCores = m.rates.rate(id, cg)
		}
	}
	if b, i, err := m.cfg.Images.RootfsUsage(id); err == nil {
		out.WritableBytes, out.WritableInodes = b, i
	}
	out.WritableMountpoint = m.cfg.ImageFsMountpoint
	return out, nil
}

// PodStats reads a sandbox's usage: its cgroup (the pod cgroup kubelet
// gave as parent, else the pause container's), its interfaces and its
// containers.
func (m *Manager) PodStats(id string) (*PodStats, error) {
	sb, ok := m.sandboxes.get(id)
	if !ok {
		return nil, notFound("pod sandbox", id)
	}
	out := m.podLevelStats(sb)
	for _, c := range m.containers.list() {
		if c.SandboxID == id && c.State == ContainerRunning {
			if cs, err := m.ContainerStats(c.ID); err == nil {
				out.Containers[c.ID] = cs
			}
		}
	}
	return out, nil
}

// podLevelStats reads what PodStats has beyond its containers: the pod's
// cgroup and interfaces (none unless the sandbox is ready). Containers is
// an empty map for the caller to fill.
func (m *Manager) podLevelStats(sb *Sandbox) *PodStats {
	out := &PodStats{Containers: map[string]*ContainerStats{}}
	if sb.State != SandboxReady {
		return out
	}
	path, err := sb.statsCgroupPath()
	if err != nil {
		return out
	}
	if cg, err := runtime.ReadCgroupStats(path); err == nil {
		out.Cgroup = cg
		out.NanoCores = m.rates.rate("pod:"+sb.ID, cg)
	}
	if sb.NetNS != "" {
		out.Interfaces, _ = interfaceStats(sb.NetNS)
	}
	return out
}

// interfaceStats reads the counters of the pod's interfaces (not lo)
// through a netlink handle in its netns.
func interfaceStats(nsPath string) ([]InterfaceStats, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		links, err = h.LinkList() // links changed during the dump: list again
	}
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", nsPath, err)
	}
	var out []InterfaceStats
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || a.Statistics == nil {
			continue
		}
		st := a.Statistics
		out = append(out, InterfaceStats{Name: a.Name, RxBytes: st.RxBytes, RxErrors: st.RxErrors,
			TxBytes: st.TxBytes, TxErrs: st.TxErrors, RxPackets: st.RxPackets, RxDropped: st.RxDropped,
			TxPackets: st.TxPackets, TxDropped: st.TxDropped})
	}
	return out, nil
}
