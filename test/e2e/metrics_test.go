package e2e

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// series is one metric of a ListPodSandboxMetrics answer, keyed for lookup.
type series struct {
	labels map[string]string
	value  uint64
	typ    runtimeapi.MetricType
}

// TestPodSandboxMetrics: the CRI metrics kubelet serves as
// /metrics/cadvisor (PodAndContainerStatsFromCRI) through the gRPC API.
// Every descriptor has help and label keys; every series has as many label
// values as its descriptor has keys and is unique; the values are the
// container's own: its limits, processes, sockets, open files, writable
// layer and RLIMIT_NOFILE, the pod's interface counters; the stream
// variant answers the same pods; a stopped pod is gone.
func TestPodSandboxMetrics(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)

	descs, err := r.rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatalf("ListMetricDescriptors: %v", err)
	}
	keys := map[string][]string{}
	for _, d := range descs.GetDescriptors() {
		if d.GetHelp() == "" || len(d.GetLabelKeys()) == 0 {
			t.Errorf("descriptor %s: help %q, label keys %v: want both", d.GetName(), d.GetHelp(), d.GetLabelKeys())
		}
		if _, dup := keys[d.GetName()]; dup {
			t.Errorf("descriptor %s listed twice", d.GetName())
		}
		keys[d.GetName()] = d.GetLabelKeys()
	}

	pod := r.podConfig("metrics")
	podID := r.runPod(t, pod)
	cfg := container("app", busyboxImage, "sh", "-c", "nc -l -p 7777 & sleep 3600")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512}
	id := r.startContainer(t, podID, pod, cfg)
	out, code := r.execSync(t, id, "sh", "-c",
		"dd if=/dev/zero of=/big bs=1M count=4 2>/dev/null && ulimit -n && ping -c 1 -W 2 $(ip route | awk '/default/ {print $3}') >/dev/null; echo ping=$?")
	if code != 0 || !strings.Contains(out, "ping=0") {
		t.Fatalf("setting up in the container: exit %d: %s", code, out)
	}
	nofile, err := strconv.ParseUint(strings.Fields(out)[0], 10, 64)
	if err != nil {
		t.Fatalf("ulimit -n printed %q", out)
	}
	// The listener is up once nc has its socket.
	if err := waitFor(10*time.Second, func() bool {
		o, _ := r.execSync(t, id, "sh", "-c", "netstat -ltn 2>/dev/null | grep -c :7777")
		return strings.TrimSpace(o) == "1"
	}); err != nil {
		t.Fatal("nc never listened")
	}
	time.Sleep(1100 * time.Millisecond) // past the sample cache's age

	resp, err := r.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v", err)
	}
	seen := map[string]bool{}
	podSeries, ctrSeries := map[string][]series{}, map[string][]series{}
	var pm *runtimeapi.PodSandboxMetrics
	check := func(m *runtimeapi.Metric, into map[string][]series) {
		k, ok := keys[m.GetName()]
		if !ok {
			t.Errorf("metric %s has no descriptor", m.GetName())
			return
		}
		if len(k) != len(m.GetLabelValues()) {
			t.Errorf("metric %s: label values %v for keys %v", m.GetName(), m.GetLabelValues(), k)
			return
		}
		id := m.GetName() + "{" + strings.Join(m.GetLabelValues(), ",") + "}"
		if seen[id] {
			t.Errorf("series %s sent twice (kubelet's registry refuses the scrape)", id)
		}
		seen[id] = true
		s := series{labels: map[string]string{}, value: m.GetValue().GetValue(), typ: m.GetMetricType()}
		for i, key := range k {
			s.labels[key] = m.GetLabelValues()[i]
		}
		if m.GetTimestamp() == 0 {
			t.Errorf("series %s has no timestamp", id)
		}
		into[m.GetName()] = append(into[m.GetName()], s)
	}
	for _, p := range resp.GetPodMetrics() {
		for _, m := range p.GetMetrics() {
			check(m, map[string][]series{})
		}
		for _, c := range p.GetContainerMetrics() {
			for _, m := range c.GetMetrics() {
				check(m, map[string][]series{})
			}
		}
		if p.GetPodSandboxId() == podID {
			pm = p
		}
	}
	if pm == nil {
		t.Fatalf("no metrics for pod %s among %d", podID, len(resp.GetPodMetrics()))
	}
	seen = map[string]bool{}
	for _, m := range pm.GetMetrics() {
		check(m, podSeries)
	}
	if len(pm.GetContainerMetrics()) != 1 || pm.GetContainerMetrics()[0].GetContainerId() != id {
		t.Fatalf("container metrics of the pod: %v, want only %s", pm.GetContainerMetrics(), id)
	}
	for _, m := range pm.GetContainerMetrics()[0].GetMetrics() {
		check(m, ctrSeries)
	}

	one := func(from map[string][]series, name string, match map[string]string) (series, bool) {
		for _, s := range from[name] {
			ok := true
			for k, v := range match {
				ok = ok && s.labels[k] == v
			}
			if ok {
				return s, true
			}
		}
		return series{}, false
	}
	base := map[string]string{"pod": "metrics", "namespace": "e2e", "container": "app", "id": id, "image": busyboxImage}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		ok     func(uint64) bool
		want   string
	}{
		{"container_spec_memory_limit_bytes", nil, func(v uint64) bool { return v == 64<<20 }, "64 MiB"},
		{"container_spec_cpu_quota", nil, func(v uint64) bool { return v == 50000 }, "50000"},
		{"container_spec_cpu_period", nil, func(v uint64) bool { return v == 100000 }, "100000"},
		{"container_spec_cpu_shares", nil, func(v uint64) bool { return v >= 510 && v <= 514 }, "512 (v2 rounds through cpu.weight)"},
		{"container_memory_working_set_bytes", nil, func(v uint64) bool { return v > 0 }, "> 0"},
		{"container_memory_usage_bytes", nil, func(v uint64) bool { return v > 0 }, "> 0"},
		{"container_processes", nil, func(v uint64) bool { return v == 2 }, "2 (nc, and sleep that sh became)"},
		{"container_threads", nil, func(v uint64) bool { return v >= 2 }, ">= 2"},
		{"container_sockets", nil, func(v uint64) bool { return v >= 1 }, ">= 1 (nc's listener)"},
		{"container_file_descriptors", nil, func(v uint64) bool { return v >= 7 }, ">= 7 (stdio of both, nc's socket)"},
		{"container_fs_usage_bytes", nil, func(v uint64) bool { return v >= 4<<20 }, ">= 4 MiB (the file written)"},
		{"container_fs_limit_bytes", nil, func(v uint64) bool { return v > 4<<20 }, "the filesystem's size"},
		{"container_fs_inodes_total", nil, func(v uint64) bool { return v > 0 }, "> 0"},
		{"container_ulimits_soft", map[string]string{"ulimit": "max_open_files"}, func(v uint64) bool { return v == nofile }, "ulimit -n " + strconv.FormatUint(nofile, 10)},
		{"container_start_time_seconds", nil, func(v uint64) bool {
			return time.Since(time.Unix(int64(v), 0)) < 5*time.Minute
		}, "within the last minutes"},
		{"container_last_seen", nil, func(v uint64) bool { return time.Since(time.Unix(int64(v), 0)) < time.Minute }, "now"},
		{"container_cpu_usage_seconds_total", nil, func(uint64) bool { return true }, "present"},
		{"container_memory_failures_total", map[string]string{"failure_type": "pgfault", "scope": "container"}, func(v uint64) bool { return v > 0 }, "> 0"},
		{"container_oom_events_total", nil, func(v uint64) bool { return v == 0 }, "0"},
	} {
		match := map[string]string{}
		for k, v := range base {
			match[k] = v
		}
		for k, v := range tc.labels {
			match[k] = v
		}
		s, ok := one(ctrSeries, tc.name, match)
		if !ok || !tc.ok(s.value) {
			t.Errorf("%s%v = %v (found %v), want %s", tc.name, tc.labels, s.value, ok, tc.want)
		}
	}
	if s, _ := one(ctrSeries, "container_cpu_usage_seconds_total", base); s.typ != runtimeapi.MetricType_COUNTER {
		t.Errorf("container_cpu_usage_seconds_total is a %v, want a counter", s.typ)
	}
	podBase := map[string]string{"pod": "metrics", "namespace": "e2e", "container": "", "id": podID, "image": ""}
	for _, name := range []string{"container_network_transmit_packets_total", "container_network_receive_packets_total",
		"container_network_transmit_bytes_total", "container_network_receive_bytes_total"} {
		m := map[string]string{"interface": "eth0"}
		for k, v := range podBase {
			m[k] = v
		}
		if s, ok := one(podSeries, name, m); !ok || s.value == 0 {
			t.Errorf("pod-level %s{eth0} = %v (found %v), want > 0 after the ping", name, s.value, ok)
		}
	}
	if s, ok := one(podSeries, "container_memory_working_set_bytes", podBase); !ok || s.value == 0 {
		t.Errorf("pod-level container_memory_working_set_bytes = %v (found %v), want > 0", s.value, ok)
	}

	// The stream answers the same pods, each once.
	stream, err := r.rt.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("StreamPodSandboxMetrics: %v", err)
	}
	streamed := map[string]int{}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("StreamPodSandboxMetrics: %v", err)
		}
		for _, p := range msg.GetPodSandboxMetrics() {
			streamed[p.GetPodSandboxId()]++
		}
	}
	if streamed[podID] != 1 {
		t.Errorf("the stream sent pod %s %d times, want once (%v)", podID, streamed[podID], streamed)
	}

	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	resp, err = r.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.GetPodMetrics() {
		if p.GetPodSandboxId() == podID {
			t.Errorf("stopped pod %s still has metrics", podID)
		}
	}
}
