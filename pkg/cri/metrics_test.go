package cri

import (
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
	crt "github.com/cri-shim/cri-shim/pkg/runtime"
)

// fullSample is a pod whose kernel accounts everything (cgroup v2 with PSI,
// hugetlb, a block device) with one container.
func fullSample() pod.PodMetrics {
	psi := &crt.Pressure{Some: crt.PressureData{Total: 3e9}, Full: crt.PressureData{Total: 1e9}}
	cg := &crt.CgroupStats{CPUUsage: 2.5e9, CPUUser: 2e9, CPUSystem: 5e8, CFSPeriods: 10, CFSThrottledPeriods: 2,
		CFSThrottledTime: 3e9, MemoryUsage: 100, MemoryWorkingSet: 90, MemoryRSS: 50, PageFaults: 7,
		OwnPageFaults: 5, CPUPressure: psi, MemoryPressure: psi, IOPressure: psi, PidsLimit: 100,
		Hugetlb: []crt.HugetlbStats{{PageSize: "2MB", Usage: 2 << 20}},
		Devices: []crt.DeviceIO{{Major: 4095, Minor: 4095, ReadBytes: 4096, Reads: 1}}}
	spec := &crt.CgroupSpec{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 64 << 20}
	now := time.Now()
	return pod.PodMetrics{
		Sandbox: &pod.Sandbox{ID: "sb1", Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod"}}},
		Sample: &pod.PodSample{At: now, Cgroup: cg, Spec: spec,
			Interfaces: []pod.InterfaceStats{{Name: "eth0", RxBytes: 1, TxBytes: 2}, {Name: "net1"}}},
		Containers: []pod.ContainerMetrics{{
			Container: &pod.Container{ID: "c1", ImageRef: "nginx:1", StartedAt: now.Add(-time.Minute),
				Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}}},
			Sample: &pod.ContainerSample{At: now, Cgroup: cg, Spec: spec,
				Procs:  &crt.ProcessStats{Processes: 2, Threads: 3, FileDescriptors: 9, Sockets: 1},
				NoFile: 1024, HaveNoFile: true, WritableBytes: 4096, WritableInodes: 3, HaveWritable: true},
		}},
	}
}

// Every announced metric gets a value from a sample that has everything,
// with as many label values as its descriptor has keys, and no series
// twice: kubelet's registry drops a scrape that breaks either rule.
func TestMetricsMatchDescriptors(t *testing.T) {
	keys := map[string]int{}
	for _, d := range metricDescriptors() {
		if d.GetHelp() == "" || len(d.GetLabelKeys()) < len(baseLabelKeys) {
			t.Errorf("descriptor %s lacks help or base label keys", d.GetName())
		}
		keys[d.GetName()] = len(d.GetLabelKeys())
	}
	if len(keys) != len(metricDefs) {
		t.Errorf("%d descriptors for %d definitions: a name is used twice", len(keys), len(metricDefs))
	}
	fs := &pod.FsInfo{Device: "/dev/vda1", CapacityBytes: 1 << 30, Inodes: 1000, InodesFree: 900}
	got := podSandboxMetrics(fullSample(), fs)
	seen, valued := map[string]bool{}, map[string]bool{}
	all := got.GetMetrics()
	for _, c := range got.GetContainerMetrics() {
		all = append(all, c.GetMetrics()...)
	}
	for _, m := range all {
		n, ok := keys[m.GetName()]
		if !ok {
			t.Errorf("metric %s has no descriptor", m.GetName())
			continue
		}
		if n != len(m.GetLabelValues()) {
			t.Errorf("metric %s: %d label values for %d keys", m.GetName(), len(m.GetLabelValues()), n)
		}
		id := m.GetName() + "{" + strings.Join(m.GetLabelValues(), ",") + "}"
		if seen[id] {
			t.Errorf("series %s twice", id)
		}
		seen[id] = true
		valued[m.GetName()] = true
	}
	for name := range keys {
		if !valued[name] {
			t.Errorf("descriptor %s never has a value", name)
		}
	}
}

func TestMetricValues(t *testing.T) {
	fs := &pod.FsInfo{Device: "/dev/vda1", CapacityBytes: 1 << 30, Inodes: 1000, InodesFree: 900}
	got := podSandboxMetrics(fullSample(), fs)
	find := func(ms []*runtimeapi.Metric, name string, labels ...string) (uint64, bool) {
		for _, m := range ms {
			if m.GetName() == name && strings.Join(m.GetLabelValues(), ",") == strings.Join(labels, ",") {
				return m.GetValue().GetValue(), true
			}
		}
		return 0, false
	}
	ctr := got.GetContainerMetrics()[0].GetMetrics()
	for _, tc := range []struct {
		pod    bool
		name   string
		labels []string
		want   uint64
	}{
		{false, "container_cpu_usage_seconds_total", []string{"web", "prod", "app", "c1", "nginx:1"}, 2},
		{false, "container_cpu_cfs_throttled_seconds_total", []string{"web", "prod", "app", "c1", "nginx:1"}, 3},
		{false, "container_fs_usage_bytes", []string{"web", "prod", "app", "c1", "nginx:1", "/dev/vda1"}, 4096},
		{false, "container_fs_inodes_free", []string{"web", "prod", "app", "c1", "nginx:1", "/dev/vda1"}, 900},
		{false, "container_fs_reads_bytes_total", []string{"web", "prod", "app", "c1", "nginx:1", "4095:4095"}, 4096},
		{false, "container_blkio_device_usage_total", []string{"web", "prod", "app", "c1", "nginx:1", "4095:4095", "4095", "4095", "Read"}, 4096},
		{false, "container_memory_failures_total", []string{"web", "prod", "app", "c1", "nginx:1", "pgfault", "container"}, 5},
		{false, "container_memory_failures_total", []string{"web", "prod", "app", "c1", "nginx:1", "pgfault", "hierarchy"}, 7},
		{false, "container_pressure_cpu_waiting_seconds_total", []string{"web", "prod", "app", "c1", "nginx:1"}, 3},
		{false, "container_pressure_cpu_stalled_seconds_total", []string{"web", "prod", "app", "c1", "nginx:1"}, 1},
		{false, "container_ulimits_soft", []string{"web", "prod", "app", "c1", "nginx:1", "max_open_files"}, 1024},
		{false, "container_spec_cpu_quota", []string{"web", "prod", "app", "c1", "nginx:1"}, 50000},
		{false, "container_threads_max", []string{"web", "prod", "app", "c1", "nginx:1"}, 100},
		{true, "container_network_transmit_bytes_total", []string{"web", "prod", "", "sb1", "", "eth0"}, 2},
		{true, "container_memory_working_set_bytes", []string{"web", "prod", "", "sb1", ""}, 90},
	} {
		ms := ctr
		if tc.pod {
			ms = got.GetMetrics()
		}
		if v, ok := find(ms, tc.name, tc.labels...); !ok || v != tc.want {
			t.Errorf("%s%v = %d (found %v), want %d", tc.name, tc.labels, v, ok, tc.want)
		}
	}

	// kubelet sends the resolved image ID as the image and the pod spec's
	// name as user_specified_image: the label is the name.
	named := fullSample()
	cfg := *named.Containers[0].Container
	cfg.Config = &runtimeapi.ContainerConfig{Metadata: cfg.Config.GetMetadata(),
		Image: &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "nginx:1.27"}}
	named.Containers[0].Container = &cfg
	ms := podSandboxMetrics(named, fs).GetContainerMetrics()[0].GetMetrics()
	if _, ok := find(ms, "container_memory_rss", "web", "prod", "app", "c1", "nginx:1.27"); !ok {
		t.Errorf("no container_memory_rss labelled with the user-specified image nginx:1.27")
	}

	// Unset quota and an unlimited RLIMIT_NOFILE are left out, as cAdvisor
	// leaves the quota out and the CRI cannot carry -1.
	pm := fullSample()
	s := *pm.Containers[0].Sample
	s.Spec = &crt.CgroupSpec{CPUPeriod: 100000}
	s.NoFile = -1
	pm.Containers[0].Sample = &s
	ctr = podSandboxMetrics(pm, fs).GetContainerMetrics()[0].GetMetrics()
	for _, name := range []string{"container_spec_cpu_quota", "container_ulimits_soft"} {
		for _, m := range ctr {
			if m.GetName() == name {
				t.Errorf("%s sent (%v) for an unset value", name, m.GetValue())
			}
		}
	}
}
