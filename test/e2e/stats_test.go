package e2e

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStatsSampled: ListContainerStats and ListPodSandboxStats answer from
// the sampler's samples (the same timestamp until the next round, which
// comes by itself within the 10 s default period), a container started
// since the last round is in the list at once, and ContainerStats of one
// container reads afresh.
func TestStatsSampled(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)
	pod := r.podConfig("stats")
	podID := r.runPod(t, pod)
	id := r.startContainer(t, podID, pod, container("app", busyboxImage, "sleep", "3600"))

	listed := func() (ctr, pod int64) {
		t.Helper()
		cs, err := r.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: id}})
		if err != nil || len(cs.GetStats()) != 1 || cs.GetStats()[0].GetMemory().GetWorkingSetBytes().GetValue() == 0 {
			t.Fatalf("ListContainerStats of the new container: %v, %v", cs, err)
		}
		ps, err := r.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: podID}})
		if err != nil || len(ps.GetStats()) != 1 || len(ps.GetStats()[0].GetLinux().GetContainers()) != 1 {
			t.Fatalf("ListPodSandboxStats of the new pod: %v, %v", ps, err)
		}
		return cs.GetStats()[0].GetCpu().GetTimestamp(), ps.GetStats()[0].GetLinux().GetCpu().GetTimestamp()
	}
	// A round may fall between two calls (every 10 s): of three tries, one
	// pair must see the same sample.
	var c1, p1, c2, p2 int64
	for try := 0; try < 3; try++ {
		c1, p1 = listed()
		time.Sleep(50 * time.Millisecond)
		if c2, p2 = listed(); c1 == c2 && p1 == p2 {
			break
		}
	}
	if c1 != c2 || p1 != p2 {
		t.Errorf("two list calls 50 ms apart read afresh 3 times (container %d -> %d, pod %d -> %d), want the same sample", c1, c2, p1, p2)
	}
	one, err := r.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil || one.GetStats().GetCpu().GetTimestamp() <= c2 {
		t.Errorf("ContainerStats: %v, %v; want a read newer than the sample's %d", one, err, c2)
	}
	// The next round comes without any call.
	if err := waitFor(15*time.Second, func() bool {
		c, p := listed()
		return c > c2 && p > p2
	}); err != nil {
		t.Errorf("no new sample within 15 s (the period is 10 s)")
	}
}
