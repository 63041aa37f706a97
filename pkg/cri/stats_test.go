package cri

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// TestStatsProtos: a sample is converted once; a new sample of the same
// container is converted again; keepOnly forgets removed containers.
func TestStatsProtos(t *testing.T) {
	var p statsProtos
	c := &pod.Container{ID: "c1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}}}
	s1 := &pod.ContainerStats{Cgroup: &runtime.CgroupStats{Time: time.Unix(100, 0), MemoryUsage: 1 << 20}}
	a, b := p.get(c, s1), p.get(c, s1)
	if a != b {
		t.Error("the same sample was converted twice")
	}
	if a.GetAttributes().GetId() != "c1" || a.GetCpu().GetTimestamp() != time.Unix(100, 0).UnixNano() {
		t.Errorf("conversion: %v", a)
	}
	s2 := &pod.ContainerStats{Cgroup: &runtime.CgroupStats{Time: time.Unix(110, 0)}}
	if n := p.get(c, s2); n == a || n.GetCpu().GetTimestamp() != time.Unix(110, 0).UnixNano() {
		t.Errorf("a new sample got the old conversion: %v", n)
	}
	p.keepOnly(map[string]bool{"other": true})
	if len(p.m) != 0 {
		t.Errorf("keepOnly left %v", p.m)
	}
}
