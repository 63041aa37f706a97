package cri

import (
	"slices"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
	crt "github.com/cri-shim/cri-shim/pkg/runtime"
)

// The CRI metrics are cAdvisor's container_* families (what kubelet served
// on /metrics/cadvisor before PodAndContainerStatsFromCRI), with the label
// keys containerd's CRI plugin uses, so one dashboard fits both runtimes.
// A CRI metric value is an integer: seconds are whole seconds.

// Label keys every metric starts with; the pod-level series have an empty
// container and image and the sandbox's ID.
var baseLabelKeys = []string{"pod", "namespace", "container", "id", "image"}

type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	extra      []string // label keys after baseLabelKeys
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

var (
	mCPUUsage         = metricDef{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", counter, nil}
	mCPUUser          = metricDef{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", counter, nil}
	mCPUSystem        = metricDef{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", counter, nil}
	mCFSPeriods       = metricDef{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil}
	mCFSThrottled     = metricDef{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil}
	mCFSThrottledSecs = metricDef{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled, in seconds.", counter, nil}
	mMemCache         = metricDef{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil}
	mMemRSS           = metricDef{"container_memory_rss", "Size of RSS in bytes.", gauge, nil}
	mMemKernel        = metricDef{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, nil}
	mMemMapped        = metricDef{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil}
	mMemSwap          = metricDef{"container_memory_swap", "Container swap usage in bytes.", gauge, nil}
	mMemFailcnt       = metricDef{"container_memory_failcnt", "Number of memory usage hits limits.", counter, nil}
	mMemUsage         = metricDef{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil}
	mMemMaxUsage      = metricDef{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil}
	mMemWorkingSet    = metricDef{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil}
	mMemFailures      = metricDef{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"}}
	mOOMEvents        = metricDef{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil}
	mNetRxBytes       = metricDef{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, []string{"interface"}}
	mNetRxPackets     = metricDef{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, []string{"interface"}}
	mNetRxDropped     = metricDef{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, []string{"interface"}}
	mNetRxErrors      = metricDef{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, []string{"interface"}}
	mNetTxBytes       = metricDef{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, []string{"interface"}}
	mNetTxPackets     = metricDef{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, []string{"interface"}}
	mNetTxDropped     = metricDef{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, []string{"interface"}}
	mNetTxErrors      = metricDef{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, []string{"interface"}}
	mFsInodesFree     = metricDef{"container_fs_inodes_free", "Number of available inodes.", gauge, []string{"device"}}
	mFsInodes         = metricDef{"container_fs_inodes_total", "Number of inodes.", gauge, []string{"device"}}
	mFsLimit          = metricDef{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, []string{"device"}}
	mFsUsage          = metricDef{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, []string{"device"}}
	mFsReadBytes      = metricDef{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, []string{"device"}}
	mFsReads          = metricDef{"container_fs_reads_total", "Cumulative count of reads completed.", counter, []string{"device"}}
	mFsWriteBytes     = metricDef{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, []string{"device"}}
	mFsWrites         = metricDef{"container_fs_writes_total", "Cumulative count of writes completed.", counter, []string{"device"}}
	mBlkio            = metricDef{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, []string{"device", "major", "minor", "operation"}}
	mProcesses        = metricDef{"container_processes", "Number of processes running inside the container.", gauge, nil}
	mFDs              = metricDef{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil}
	mSockets          = metricDef{"container_sockets", "Number of open sockets for the container.", gauge, nil}
	mThreads          = metricDef{"container_threads", "Number of threads running inside the container.", gauge, nil}
	mThreadsMax       = metricDef{"container_threads_max", "Maximum number of threads allowed inside the container, 0 if unlimited.", gauge, nil}
	mUlimitsSoft      = metricDef{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice.", gauge, []string{"ulimit"}}
	mLastSeen         = metricDef{"container_last_seen", "Last time a container was seen by the exporter.", gauge, nil}
	mStartTime        = metricDef{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil}
	mSpecCPUPeriod    = metricDef{"container_spec_cpu_period", "CPU period of the container.", gauge, nil}
	mSpecCPUQuota     = metricDef{"container_spec_cpu_quota", "CPU quota of the container.", gauge, nil}
	mSpecCPUShares    = metricDef{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil}
	mSpecMemLimit     = metricDef{"container_spec_memory_limit_bytes", "Memory limit for the container, 0 if unlimited.", gauge, nil}
	mSpecMemReserve   = metricDef{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container, 0 if unset.", gauge, nil}
	mSpecMemSwapLimit = metricDef{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container, 0 if unlimited.", gauge, nil}
	mHugetlbUsage     = metricDef{"container_hugetlb_usage_bytes", "Hugepage usage in bytes.", gauge, []string{"pagesize"}}
	mHugetlbMaxUsage  = metricDef{"container_hugetlb_max_usage_bytes", "Hugepage maximum usage in bytes.", gauge, []string{"pagesize"}}
	mPressureCPUStall = metricDef{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counter, nil}
	mPressureCPUWait  = metricDef{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", counter, nil}
	mPressureMemStall = metricDef{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counter, nil}
	mPressureMemWait  = metricDef{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", counter, nil}
	mPressureIOStall  = metricDef{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counter, nil}
	mPressureIOWait   = metricDef{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", counter, nil}
)

// metricDefs is every metric ListMetricDescriptors announces; each has a
// value in ListPodSandboxMetrics when the kernel accounts it (PSI and
// hugetlb need cgroup v2 / the hugetlb controller, blkio a block device
// the container did IO to).
var metricDefs = []metricDef{
	mCPUUsage, mCPUUser, mCPUSystem, mCFSPeriods, mCFSThrottled, mCFSThrottledSecs,
	mMemCache, mMemRSS, mMemKernel, mMemMapped, mMemSwap, mMemFailcnt, mMemUsage, mMemMaxUsage,
	mMemWorkingSet, mMemFailures, mOOMEvents,
	mNetRxBytes, mNetRxPackets, mNetRxDropped, mNetRxErrors, mNetTxBytes, mNetTxPackets, mNetTxDropped, mNetTxErrors,
	mFsInodesFree, mFsInodes, mFsLimit, mFsUsage, mFsReadBytes, mFsReads, mFsWriteBytes, mFsWrites, mBlkio,
	mProcesses, mFDs, mSockets, mThreads, mThreadsMax, mUlimitsSoft,
	mLastSeen, mStartTime,
	mSpecCPUPeriod, mSpecCPUQuota, mSpecCPUShares, mSpecMemLimit, mSpecMemReserve, mSpecMemSwapLimit,
	mHugetlbUsage, mHugetlbMaxUsage,
	mPressureCPUStall, mPressureCPUWait, mPressureMemStall, mPressureMemWait, mPressureIOStall, mPressureIOWait,
}

func metricDescriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDefs))
	for _, d := range metricDefs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help,
			LabelKeys: append(slices.Clip(baseLabelKeys), d.extra...)})
	}
	return out
}

// emitter appends metrics that share their base label values and time.
type emitter struct {
	labels []string
	ts     int64
	out    []*runtimeapi.Metric
}

func (e *emitter) add(d metricDef, v uint64, extra ...string) {
	if len(extra) != len(d.extra) {
		// A programming error; a series with the wrong label count would be
		// refused by kubelet's registry, so it is never sent.
		panic("metric " + d.name + ": label values do not match its keys")
	}
	e.out = append(e.out, &runtimeapi.Metric{Name: d.name, Timestamp: e.ts, MetricType: d.typ,
		LabelValues: append(slices.Clip(e.labels), extra...), Value: &runtimeapi.UInt64Value{Value: v}})
}

func seconds(ns uint64) uint64 { return ns / uint64(time.Second) }

// cgroupMetrics emits what one cgroup's sample gives: CPU, memory, IO,
// hugetlb, PSI and the configured limits.
func (e *emitter) cgroupMetrics(cg *crt.CgroupStats, spec *crt.CgroupSpec) {
	if cg != nil {
		e.add(mCPUUsage, seconds(cg.CPUUsage))
		e.add(mCPUUser, seconds(cg.CPUUser))
		e.add(mCPUSystem, seconds(cg.CPUSystem))
		e.add(mCFSPeriods, cg.CFSPeriods)
		e.add(mCFSThrottled, cg.CFSThrottledPeriods)
		e.add(mCFSThrottledSecs, seconds(cg.CFSThrottledTime))
		e.add(mMemCache, cg.MemoryCache)
		e.add(mMemRSS, cg.MemoryRSS)
		e.add(mMemKernel, cg.MemoryKernel)
		e.add(mMemMapped, cg.MemoryMappedFile)
		e.add(mMemSwap, cg.SwapUsage)
		e.add(mMemFailcnt, cg.MemoryFailcnt)
		e.add(mMemUsage, cg.MemoryUsage)
		e.add(mMemMaxUsage, cg.MemoryMaxUsage)
		e.add(mMemWorkingSet, cg.MemoryWorkingSet)
		e.add(mMemFailures, cg.OwnPageFaults, "pgfault", "container")
		e.add(mMemFailures, cg.OwnMajorPageFaults, "pgmajfault", "container")
		e.add(mMemFailures, cg.PageFaults, "pgfault", "hierarchy")
		e.add(mMemFailures, cg.MajorPageFaults, "pgmajfault", "hierarchy")
		e.add(mOOMEvents, cg.OOMKills)
		e.add(mThreadsMax, cg.PidsLimit)
		for _, d := range cg.Devices {
			dev := pod.BlockDeviceName(d.Major, d.Minor)
			e.add(mFsReadBytes, d.ReadBytes, dev)
			e.add(mFsReads, d.Reads, dev)
			e.add(mFsWriteBytes, d.WriteBytes, dev)
			e.add(mFsWrites, d.Writes, dev)
			maj, mnr := strconv.FormatUint(d.Major, 10), strconv.FormatUint(d.Minor, 10)
			e.add(mBlkio, d.ReadBytes, dev, maj, mnr, "Read")
			e.add(mBlkio, d.WriteBytes, dev, maj, mnr, "Write")
		}
		for _, h := range cg.Hugetlb {
			e.add(mHugetlbUsage, h.Usage, h.PageSize)
			e.add(mHugetlbMaxUsage, h.MaxUsage, h.PageSize)
		}
		for _, p := range []struct {
			psi         *crt.Pressure
			stall, wait metricDef
		}{
			{cg.CPUPressure, mPressureCPUStall, mPressureCPUWait},
			{cg.MemoryPressure, mPressureMemStall, mPressureMemWait},
			{cg.IOPressure, mPressureIOStall, mPressureIOWait},
		} {
			if p.psi != nil {
				e.add(p.stall, seconds(p.psi.Full.Total))
				e.add(p.wait, seconds(p.psi.Some.Total))
			}
		}
	}
	if spec != nil {
		e.add(mSpecCPUPeriod, spec.CPUPeriod)
		if spec.CPUQuota != 0 {
			e.add(mSpecCPUQuota, spec.CPUQuota)
		}
		e.add(mSpecCPUShares, spec.CPUShares)
		e.add(mSpecMemLimit, spec.MemoryLimit)
		e.add(mSpecMemReserve, spec.MemoryReservation)
		e.add(mSpecMemSwapLimit, spec.MemorySwapLimit)
	}
}

// podSandboxMetrics converts one sandbox's samples. fs describes the
// filesystem writable layers live on (nil: unknown).
func podSandboxMetrics(pm pod.PodMetrics, fs *pod.FsInfo) *runtimeapi.PodSandboxMetrics {
	sb := pm.Sandbox
	md := sb.Config.GetMetadata()
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID}
	if s := pm.Sample; s != nil {
		e := &emitter{labels: []string{md.GetName(), md.GetNamespace(), "", sb.ID, ""}, ts: s.At.UnixNano()}
		e.cgroupMetrics(s.Cgroup, s.Spec)
		for _, i := range s.Interfaces {
			e.add(mNetRxBytes, i.RxBytes, i.Name)
			e.add(mNetRxPackets, i.RxPackets, i.Name)
			e.add(mNetRxDropped, i.RxDropped, i.Name)
			e.add(mNetRxErrors, i.RxErrors, i.Name)
			e.add(mNetTxBytes, i.TxBytes, i.Name)
			e.add(mNetTxPackets, i.TxPackets, i.Name)
			e.add(mNetTxDropped, i.TxDropped, i.Name)
			e.add(mNetTxErrors, i.TxErrs, i.Name)
		}
		out.Metrics = e.out
	}
	for _, cm := range pm.Containers {
		c, s := cm.Container, cm.Sample
		if s == nil {
			continue
		}
		// The image as the pod spec names it (kubelet sends the resolved ID
		// as the image and the name as user_specified_image), as cAdvisor's
		// label has it.
		image := c.Config.GetImage().GetUserSpecifiedImage()
		if image == "" {
			image = c.ImageRef
		}
		e := &emitter{labels: []string{md.GetName(), md.GetNamespace(), c.Config.GetMetadata().GetName(), c.ID, image},
			ts: s.At.UnixNano()}
		e.add(mLastSeen, uint64(s.At.Unix()))
		if !c.StartedAt.IsZero() {
			e.add(mStartTime, uint64(c.StartedAt.Unix()))
		}
		e.cgroupMetrics(s.Cgroup, s.Spec)
		if p := s.Procs; p != nil {
			e.add(mProcesses, p.Processes)
			e.add(mThreads, p.Threads)
			e.add(mFDs, p.FileDescriptors)
			e.add(mSockets, p.Sockets)
		}
		if s.HaveNoFile && s.NoFile >= 0 {
			// cAdvisor's "unlimited" is -1; a CRI value is unsigned, so an
			// unlimited soft limit is left out rather than sent as 2^64-1.
			e.add(mUlimitsSoft, uint64(s.NoFile), "max_open_files")
		}
		if fs != nil && s.HaveWritable {
			e.add(mFsUsage, s.WritableBytes, fs.Device)
			e.add(mFsLimit, fs.CapacityBytes, fs.Device)
			e.add(mFsInodes, fs.Inodes, fs.Device)
			e.add(mFsInodesFree, fs.InodesFree, fs.Device)
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: e.out})
	}
	return out
}

// listPodSandboxMetrics samples every ready sandbox (samples younger than
// pod.MetricsMaxAge are reused) and converts them.
func (s *Server) listPodSandboxMetrics() []*runtimeapi.PodSandboxMetrics {
	var fs *pod.FsInfo
	if info, err := s.Pods.WritableFs(); err == nil {
		fs = &info
	}
	var out []*runtimeapi.PodSandboxMetrics
	for _, pm := range s.Pods.Metrics(pod.MetricsMaxAge) {
		out = append(out, podSandboxMetrics(pm, fs))
	}
	return out
}
