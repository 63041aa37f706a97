package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// rpc fills the node to kubelet's default maximum (pods, each with
// containers sleeping containers) and times the list, status, stats and
// metrics calls kubelet makes at that density, one at a time as kubelet's
// PLEG and housekeeping do, printing p50 and p99 of each; then bursts of
// concurrent RunPodSandbox on that full node.
func (b *bench) rpc(ctx context.Context, pods, containers, rounds int) error {
	var podIDs, ctrIDs []string
	defer func() {
		for _, id := range podIDs {
			b.removePod(context.Background(), id)
		}
	}()
	start := time.Now()
	for range pods {
		id, err := b.startPod(ctx, containers)
		if err != nil {
			return err
		}
		podIDs = append(podIDs, id)
	}
	fmt.Printf("%s: %d pods x %d containers started in %s\n", b.label, pods, containers, time.Since(start).Round(time.Second))
	list, err := b.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return err
	}
	for _, c := range list.GetContainers() {
		ctrIDs = append(ctrIDs, c.GetId())
	}
	time.Sleep(3 * time.Second)

	calls := []struct {
		name string
		// gap before each call: the metrics samples are reused for a
		// second (pod.MetricsMaxAge), and kubelet scrapes every 10-15 s,
		// so each timed scrape must read everything afresh.
		gap  time.Duration
		call func() error
	}{
		{"ListPodSandbox", 0, func() error { _, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); return err }},
		{"ListContainers", 0, func() error { _, err := b.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); return err }},
		{"PodSandboxStatus", 0, func() error {
			_, err := b.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podIDs[rand.IntN(len(podIDs))]})
			return err
		}},
		{"ContainerStatus", 0, func() error {
			_, err := b.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrIDs[rand.IntN(len(ctrIDs))]})
			return err
		}},
		{"ListContainerStats", 0, func() error {
			_, err := b.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return err
		}},
		{"ListPodSandboxStats", 0, func() error {
			_, err := b.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		}},
		{"ListPodSandboxMetrics", 1100 * time.Millisecond, func() error {
			_, err := b.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
			return err
		}},
	}
	fmt.Printf("%-24s %-22s %6s %9s %9s %9s\n", "runtime", "rpc", "calls", "p50 ms", "p99 ms", "max ms")
	for _, c := range calls {
		var d []time.Duration
		unimplemented := false
		n := rounds
		if c.gap > 0 {
			n = max(1, rounds/4)
		}
		// At most a minute per RPC: a runtime whose call takes seconds
		// gets fewer calls (the calls column says how many).
		budget := time.Now().Add(time.Minute)
		var failed error
		for i := 0; i < n && (i < 10 || time.Now().Before(budget)); i++ {
			time.Sleep(c.gap)
			t := time.Now()
			err := c.call()
			if status.Code(err) == codes.Unimplemented {
				unimplemented = true
				break
			}
			if err != nil {
				failed = err
				break
			}
			d = append(d, time.Since(t))
		}
		if unimplemented || failed != nil {
			what := "unimplemented"
			if failed != nil {
				what = "error: " + failed.Error()
			}
			fmt.Printf("%-24s %-22s %s\n", b.label, c.name, what)
			continue
		}
		b.printLatencies(c.name, d)
	}
	return b.burst(ctx, burstRounds, burstSize)
}

// A burst: burstSize RunPodSandbox calls at once on the full node (a
// deployment scaled up, a node back from maintenance), burstRounds times.
const burstRounds, burstSize = 5, 10

// burst times each RunPodSandbox of rounds bursts of size concurrent calls
// (pods without containers, removed after each burst) and prints p50, p99
// and max over all calls.
func (b *bench) burst(ctx context.Context, rounds, size int) error {
	d := make([]time.Duration, rounds*size)
	for r := range rounds {
		var wg sync.WaitGroup
		ids := make([]string, size)
		errs := make([]error, size)
		for i := range size {
			wg.Go(func() {
				t := time.Now()
				ids[i], errs[i] = b.startPod(ctx, 0)
				d[r*size+i] = time.Since(t)
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != "" {
				b.removePod(context.Background(), id)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("RunPodSandbox burst: %w", err)
		}
	}
	b.printLatencies(fmt.Sprintf("RunPodSandbox x%d", size), d)
	return nil
}

// printLatencies prints a row of the table: the count, p50, p99 and max of
// the calls d (sorted here) in ms.
func (b *bench) printLatencies(name string, d []time.Duration) {
	slices.Sort(d)
	// Nearest rank: the smallest value with at least p of the calls at or
	// below it.
	q := func(p float64) float64 {
		return float64(d[max(0, int(math.Ceil(p*float64(len(d))))-1)].Microseconds()) / 1000
	}
	fmt.Printf("%-24s %-22s %6d %9.2f %9.2f %9.2f\n", b.label, name, len(d), q(0.5), q(0.99), q(1))
}
