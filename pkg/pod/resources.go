package pod

import (
	"os"
	"slices"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hostCgroups describes the machine's cgroup setup once.
var hostCgroups = sync.OnceValue(func() (h struct{ v2, hugetlb bool }) {
	if data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		h.v2 = true
		h.hugetlb = slices.Contains(strings.Fields(string(data)), "hugetlb")
		return h
	}
	_, err := os.Stat("/sys/fs/cgroup/hugetlb")
	h.hugetlb = err == nil
	return h
})

// linuxResources maps CRI resources onto the OCI spec. What the machine
// cannot enforce is left out instead of failing every container: kubelet
// sends hugepage limits (of 0) on every container even where no hugetlb
// controller exists, and unified (cgroup v2) keys mean nothing on v1.
func linuxResources(r *runtimeapi.LinuxContainerResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuShares(); v > 0 {
		s := uint64(v)
		cpu.Shares = &s
	}
	if v := r.GetCpuQuota(); v > 0 {
		cpu.Quota = &v
	}
	if v := r.GetCpuPeriod(); v > 0 {
		p := uint64(v)
		cpu.Period = &p
	}
	if cpu.Shares != nil || cpu.Quota != nil || cpu.Period != nil || cpu.Cpus != "" || cpu.Mems != "" {
		out.CPU = cpu
	}
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		out.Memory = &specs.LinuxMemory{Limit: &v}
		if s := r.GetMemorySwapLimitInBytes(); s > 0 {
			out.Memory.Swap = &s
		}
	}
	h := hostCgroups()
	if h.hugetlb {
		for _, l := range r.GetHugepageLimits() {
			out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: l.GetPageSize(), Limit: l.GetLimit()})
		}
	}
	if h.v2 && len(r.GetUnified()) > 0 {
		out.Unified = r.GetUnified()
	}
	return out
}
