package runtime

import (
	"errors"
	"fmt"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
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
	// IO totals over all devices (cgroup v2 io.stat).
	IOReadBytes, IOWriteBytes, IOReads, IOWrites uint64
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
		if st.CPU != nil {
			s.CPUUsage = st.CPU.UsageUsec * 1000
			s.CPUPressure = pressure(st.CPU.PSI)
		}
		if mem := st.Memory; mem != nil {
			s.MemoryUsage, s.MemoryRSS, s.PageFaults, s.MajorPageFaults = mem.Usage, mem.Anon, mem.Pgfault, mem.Pgmajfault
			s.MemoryWorkingSet = sub(mem.Usage, mem.InactiveFile)
			if mem.UsageLimit < 1<<62 {
				s.MemoryLimit = mem.UsageLimit
			}
			s.SwapUsage = mem.SwapUsage
			s.MemoryPressure = pressure(mem.PSI)
		}
		if st.Pids != nil {
			s.Pids = st.Pids.Current
		}
		if io := st.Io; io != nil {
			s.IOPressure = pressure(io.PSI)
			for _, e := range io.Usage {
				s.IOReadBytes += e.Rbytes
				s.IOWriteBytes += e.Wbytes
				s.IOReads += e.Rios
				s.IOWrites += e.Wios
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
	if st.CPU != nil && st.CPU.Usage != nil {
		s.CPUUsage = st.CPU.Usage.Total
	}
	if mem := st.Memory; mem != nil && mem.Usage != nil {
		s.MemoryUsage = mem.Usage.Usage
		s.MemoryWorkingSet = sub(mem.Usage.Usage, mem.TotalInactiveFile)
		s.MemoryRSS = mem.TotalRSS
		s.PageFaults, s.MajorPageFaults = mem.TotalPgFault, mem.TotalPgMajFault
		if mem.Usage.Limit < 1<<62 {
			s.MemoryLimit = mem.Usage.Limit
		}
		if mem.Swap != nil {
			s.SwapUsage = sub(mem.Swap.Usage, mem.Usage.Usage)
		}
	}
	if st.Pids != nil {
		s.Pids = st.Pids.Current
	}
	return s, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
