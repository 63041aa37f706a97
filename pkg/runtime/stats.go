package runtime

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	stats2 "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// CgroupStats is what kubelet needs from a cgroup.
type CgroupStats struct {
	Time time.Time
	// CPUUsage is cumulative CPU time in nanoseconds.
	CPUUsage uint64
	// MemoryUsage includes the page cache; MemoryWorkingSet is usage minus
	// inactive file pages (what kubelet evicts on).
	MemoryUsage      uint64
	MemoryWorkingSet uint64
	MemoryRSS        uint64
	MemoryLimit      uint64 // 0: unlimited
	PageFaults       uint64
	MajorPageFaults  uint64
	SwapUsage        uint64
	Pids             uint64
	// Pressure stall information (cgroup v2 with PSI in the kernel; nil
	// otherwise) of the cgroup's CPU, memory and IO.
	CPUPressure, MemoryPressure, IOPressure *Pressure
	// IO totals over all devices (cgroup v2 io.stat, v1 blkio).
	IOReadBytes, IOWriteBytes, IOReads, IOWrites uint64

	// The rest is what cAdvisor-style metrics add (ListPodSandboxMetrics).

	// CPUUser and CPUSystem split CPUUsage (nanoseconds); CFS* are the
	// bandwidth controller's counters (ThrottledTime in nanoseconds).
	CPUUser, CPUSystem                                uint64
	CFSPeriods, CFSThrottledPeriods, CFSThrottledTime uint64
	// MemoryCache is the page cache (v1 cache, v2 file), MemoryKernel the
	// kernel's own memory charged to the cgroup, MemoryMaxUsage the peak
	// (v1 max_usage_in_bytes, v2 memory.peak; 0 when the kernel has none).
	MemoryCache, MemoryMappedFile, MemoryKernel, MemoryMaxUsage uint64
	// MemoryFailcnt counts hits of the limit (v1 failcnt, v2 events max).
	MemoryFailcnt uint64
	// OwnPageFaults/OwnMajorPageFaults leave out child cgroups on v1 (v2
	// counts only hierarchically: there they equal PageFaults).
	OwnPageFaults, OwnMajorPageFaults uint64
	OOMKills                          uint64
	PidsLimit                         uint64 // 0: unlimited
	Hugetlb                           []HugetlbStats
	Devices                           []DeviceIO
}

// HugetlbStats is one huge page size's usage. MaxUsage is 0 on cgroup v2,
// which keeps no peak.
type HugetlbStats struct {
	PageSize        string
	Usage, MaxUsage uint64
}

// DeviceIO is one block device's IO as the cgroup accounts it.
type DeviceIO struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// Pressure is one resource's PSI: the share of time some (or all, Full)
// tasks of the cgroup stalled on it.
type Pressure struct {
	Some, Full PressureData
}

// PressureData is one PSI line. Total is in nanoseconds (the kernel counts
// microseconds); the averages are percentages.
type PressureData struct {
	Total                uint64
	Avg10, Avg60, Avg300 float64
}

func pressure(p *stats2.PSIStats) *Pressure {
	if p == nil || (p.GetSome() == nil && p.GetFull() == nil) {
		return nil
	}
	data := func(d *stats2.PSIData) PressureData {
		return PressureData{Total: d.GetTotal() * 1000, Avg10: d.GetAvg10(), Avg60: d.GetAvg60(), Avg300: d.GetAvg300()}
	}
	return &Pressure{Some: data(p.GetSome()), Full: data(p.GetFull())}
}

// ErrNoCgroup is returned for a cgroup that does not exist (anymore).
var ErrNoCgroup = errors.New("cgroup does not exist")

// ReadCgroupStats reads the statistics of a cgroupfs path (as in an OCI
// spec's cgroupsPath) on cgroup v1 or v2.
func ReadCgroupStats(path string) (*CgroupStats, error) {
	now := time.Now()
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoCgroup, path, err)
		}
		st, err := m.Stat()
		if err != nil {
			return nil, fmt.Errorf("read cgroup %s: %w", path, err)
		}
		s := &CgroupStats{Time: now}
		if cpu := st.CPU; cpu != nil {
			s.CPUUsage = cpu.UsageUsec * 1000
			s.CPUUser, s.CPUSystem = cpu.UserUsec*1000, cpu.SystemUsec*1000
			s.CFSPeriods, s.CFSThrottledPeriods, s.CFSThrottledTime = cpu.NrPeriods, cpu.NrThrottled, cpu.ThrottledUsec*1000
			s.CPUPressure = pressure(cpu.PSI)
		}
		if mem := st.Memory; mem != nil {
			s.MemoryUsage, s.MemoryRSS, s.PageFaults, s.MajorPageFaults = mem.Usage, mem.Anon, mem.Pgfault, mem.Pgmajfault
			s.OwnPageFaults, s.OwnMajorPageFaults = mem.Pgfault, mem.Pgmajfault
			s.MemoryWorkingSet = sub(mem.Usage, mem.InactiveFile)
			s.MemoryLimit = limit(mem.UsageLimit)
			s.SwapUsage = mem.SwapUsage
			s.MemoryCache, s.MemoryMappedFile, s.MemoryMaxUsage = mem.File, mem.FileMapped, mem.MaxUsage
			// memory.stat has no single "kernel" line before Linux 5.18;
			// these are the parts it sums.
			s.MemoryKernel = mem.KernelStack + mem.Slab + mem.Sock
			s.MemoryPressure = pressure(mem.PSI)
		}
		if ev := st.MemoryEvents; ev != nil {
			s.MemoryFailcnt, s.OOMKills = ev.Max, ev.OomKill
		}
		if st.Pids != nil {
			s.Pids = st.Pids.Current
			s.PidsLimit = limit(st.Pids.Limit)
		}
		for _, h := range st.Hugetlb {
			s.Hugetlb = append(s.Hugetlb, HugetlbStats{PageSize: h.Pagesize, Usage: h.Current})
		}
		if io := st.Io; io != nil {
			s.IOPressure = pressure(io.PSI)
			for _, e := range io.Usage {
				s.IOReadBytes += e.Rbytes
				s.IOWriteBytes += e.Wbytes
				s.IOReads += e.Rios
				s.IOWrites += e.Wios
				s.Devices = append(s.Devices, DeviceIO{Major: e.Major, Minor: e.Minor,
					ReadBytes: e.Rbytes, WriteBytes: e.Wbytes, Reads: e.Rios, Writes: e.Wios})
			}
		}
		return s, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoCgroup, path, err)
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	s := &CgroupStats{Time: now}
	if cpu := st.CPU; cpu != nil {
		if u := cpu.Usage; u != nil {
			s.CPUUsage, s.CPUUser, s.CPUSystem = u.Total, u.User, u.Kernel
		}
		if t := cpu.Throttling; t != nil {
			s.CFSPeriods, s.CFSThrottledPeriods, s.CFSThrottledTime = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
	}
	if mem := st.Memory; mem != nil && mem.Usage != nil {
		s.MemoryUsage = mem.Usage.Usage
		s.MemoryWorkingSet = sub(mem.Usage.Usage, mem.TotalInactiveFile)
		s.MemoryRSS = mem.TotalRSS
		s.PageFaults, s.MajorPageFaults = mem.TotalPgFault, mem.TotalPgMajFault
		s.MemoryLimit = limit(mem.Usage.Limit)
		if mem.Swap != nil {
			s.SwapUsage = sub(mem.Swap.Usage, mem.Usage.Usage)
		}
		s.MemoryCache, s.MemoryMappedFile = mem.TotalCache, mem.TotalMappedFile
		s.MemoryMaxUsage, s.MemoryFailcnt = mem.Usage.Max, mem.Usage.Failcnt
		s.OwnPageFaults, s.OwnMajorPageFaults = mem.PgFault, mem.PgMajFault
		if mem.Kernel != nil {
			s.MemoryKernel = mem.Kernel.Usage
		}
	}
	if oom := st.MemoryOomControl; oom != nil {
		s.OOMKills = oom.OomKill
	}
	if st.Pids != nil {
		s.Pids = st.Pids.Current
		s.PidsLimit = limit(st.Pids.Limit)
	}
	for _, h := range st.Hugetlb {
		s.Hugetlb = append(s.Hugetlb, HugetlbStats{PageSize: h.Pagesize, Usage: h.Usage, MaxUsage: h.Max})
	}
	if b := st.Blkio; b != nil {
		s.Devices = blkioDevices(b.IoServiceBytesRecursive, b.IoServicedRecursive)
		for _, d := range s.Devices {
			s.IOReadBytes += d.ReadBytes
			s.IOWriteBytes += d.WriteBytes
			s.IOReads += d.Reads
			s.IOWrites += d.Writes
		}
	}
	return s, nil
}

// blkioDevices folds v1's per-operation blkio entries (bytes, then IOs)
// into one record per device.
func blkioDevices(bytes, ios []*stats1.BlkIOEntry) []DeviceIO {
	var out []DeviceIO
	at := map[[2]uint64]int{}
	add := func(entries []*stats1.BlkIOEntry, read, write func(*DeviceIO) *uint64) {
		for _, e := range entries {
			k := [2]uint64{e.Major, e.Minor}
			i, ok := at[k]
			if !ok {
				i = len(out)
				at[k] = i
				out = append(out, DeviceIO{Major: e.Major, Minor: e.Minor})
			}
			switch {
			case strings.EqualFold(e.Op, "read"):
				*read(&out[i]) += e.Value
			case strings.EqualFold(e.Op, "write"):
				*write(&out[i]) += e.Value
			}
		}
	}
	add(bytes, func(d *DeviceIO) *uint64 { return &d.ReadBytes }, func(d *DeviceIO) *uint64 { return &d.WriteBytes })
	add(ios, func(d *DeviceIO) *uint64 { return &d.Reads }, func(d *DeviceIO) *uint64 { return &d.Writes })
	return out
}

// limit maps the kernel's "no limit" (max, or a page-rounded MaxInt64) to 0.
func limit(v uint64) uint64 {
	if v >= 1<<62 {
		return 0
	}
	return v
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
