package cri

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

func cpuMemStats(cg *runtime.CgroupStats, nanoCores uint64, ts int64) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage) {
	cpu := &runtimeapi.CpuUsage{Timestamp: ts}
	mem := &runtimeapi.MemoryUsage{Timestamp: ts}
	if cg == nil {
		return cpu, mem
	}
	cpu.UsageCoreNanoSeconds = u64(cg.CPUUsage)
	cpu.UsageNanoCores = u64(nanoCores)
	mem.WorkingSetBytes = u64(cg.MemoryWorkingSet)
	mem.UsageBytes = u64(cg.MemoryUsage)
	mem.RssBytes = u64(cg.MemoryRSS)
	mem.PageFaults = u64(cg.PageFaults)
	mem.MajorPageFaults = u64(cg.MajorPageFaults)
	if cg.MemoryLimit > 0 {
		mem.AvailableBytes = u64(cg.MemoryLimit - min(cg.MemoryLimit, cg.MemoryWorkingSet))
	}
	cpu.Psi, mem.Psi = psi(cg.CPUPressure), psi(cg.MemoryPressure)
	return cpu, mem
}

// ioStats is the CRI's IO usage: PSI only (cgroup v2); nil without it.
func ioStats(cg *runtime.CgroupStats, ts int64) *runtimeapi.IoUsage {
	if cg == nil || cg.IOPressure == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: ts, Psi: psi(cg.IOPressure)}
}

func psi(p *runtime.Pressure) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	data := func(d runtime.PressureData) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: d.Total, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Some: data(p.Some), Full: data(p.Full)}
}

func toContainerStats(c *pod.Container, st *pod.ContainerStats) *runtimeapi.ContainerStats {
	ts := time.Now().UnixNano()
	if st.Cgroup != nil {
		ts = st.Cgroup.Time.UnixNano()
	}
	cpu, mem := cpuMemStats(st.Cgroup, st.NanoCores, ts)
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.Config.GetMetadata(),
			Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations()},
		Cpu: cpu, Memory: mem, Io: ioStats(st.Cgroup, ts),
		WritableLayer: &runtimeapi.FilesystemUsage{Timestamp: ts,
			FsId:      &runtimeapi.FilesystemIdentifier{Mountpoint: st.WritableMountpoint},
			UsedBytes: u64(st.WritableBytes), InodesUsed: u64(st.WritableInodes)},
	}
	if st.Cgroup != nil {
		out.Swap = &runtimeapi.SwapUsage{Timestamp: ts, SwapUsageBytes: u64(st.Cgroup.SwapUsage)}
	}
	return out
}

// podStats reads a pod's stats now and converts them.
func (s *Server) podStats(sb *pod.Sandbox) (*runtimeapi.PodSandboxStats, error) {
	st, err := s.Pods.PodStats(sb.ID)
	if err != nil {
		return nil, err
	}
	return s.toPodStats(sb, st, nil), nil
}

// toPodStats converts a pod's stats; ctrs are its containers if the caller
// has them (else each is looked up).
func (s *Server) toPodStats(sb *pod.Sandbox, st *pod.PodStats, ctrs []*pod.Container) *runtimeapi.PodSandboxStats {
	ts := time.Now().UnixNano()
	if st.Cgroup != nil {
		ts = st.Cgroup.Time.UnixNano()
	}
	cpu, mem := cpuMemStats(st.Cgroup, st.NanoCores, ts)
	linux := &runtimeapi.LinuxPodSandboxStats{Cpu: cpu, Memory: mem, Io: ioStats(st.Cgroup, ts)}
	if st.Cgroup != nil {
		linux.Process = &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: u64(st.Cgroup.Pids)}
	}
	if len(st.Interfaces) > 0 {
		net := &runtimeapi.NetworkUsage{Timestamp: ts}
		for i, ifs := range st.Interfaces {
			n := &runtimeapi.NetworkInterfaceUsage{Name: ifs.Name, RxBytes: u64(ifs.RxBytes), RxErrors: u64(ifs.RxErrors),
				TxBytes: u64(ifs.TxBytes), TxErrors: u64(ifs.TxErrs)}
			if i == 0 || ifs.Name == "eth0" {
				net.DefaultInterface = n
			} else {
				net.Interfaces = append(net.Interfaces, n)
			}
		}
		linux.Network = net
	}
	byID := make(map[string]*pod.Container, len(ctrs))
	for _, c := range ctrs {
		byID[c.ID] = c
	}
	for id, cs := range st.Containers {
		c := byID[id]
		if c == nil {
			var err error
			if c, err = s.Pods.Container(id); err != nil {
				continue
			}
		}
		linux.Containers = append(linux.Containers, s.protos.get(c, cs))
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: sb.ID, Metadata: sb.Config.GetMetadata(),
			Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations()},
		Linux: linux,
	}
}

// statsProtos keeps the CRI form of each container's newest stats sample,
// so the list calls convert a sample once, not on every call (330
// containers: 0.6 ms and 5,600 allocations per call, which also feed the
// GC that makes the calls' tail). A converted message is shared by
// concurrent responses: gRPC only reads it.
type statsProtos struct {
	mu sync.Mutex
	m  map[string]statsProto
}

type statsProto struct {
	src *pod.ContainerStats
	out *runtimeapi.ContainerStats
}

// get converts st, the stats of c, or returns its earlier conversion.
func (p *statsProtos) get(c *pod.Container, st *pod.ContainerStats) *runtimeapi.ContainerStats {
	p.mu.Lock()
	e, ok := p.m[c.ID]
	p.mu.Unlock()
	if ok && e.src == st {
		return e.out
	}
	out := toContainerStats(c, st)
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]statsProto{}
	}
	p.m[c.ID] = statsProto{st, out}
	p.mu.Unlock()
	return out
}

// keepOnly forgets the conversions of containers not in live.
func (p *statsProtos) keepOnly(live map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.m {
		if !live[id] {
			delete(p.m, id)
		}
	}
}
