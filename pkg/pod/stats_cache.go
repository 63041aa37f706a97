package pod

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Stats off the request path. kubelet asks for every container's and pod's
// stats at once (ListContainerStats, ListPodSandboxStats) on each summary:
// its eviction manager every 10 s, metrics-server's scrapes, /stats/summary.
// Reading the cgroups and writable layers of 110 pods x 3 containers takes
// ~0.3 s, too long for an RPC kubelet makes that often, so a sampler reads
// them all every StatsPeriod (default 10 s, cAdvisor's housekeeping
// interval) and the list calls answer from memory. A sample is at most
// StatsPeriod old, plus the time one round takes; its timestamp is the
// read's, so kubelet's rates stay right. Objects the sampler has not seen
// yet (a container started since the last round) are read on the call and
// kept. The single-object calls (ContainerStats, PodSandboxStats: crictl,
// kubelet's per-pod paths) always read afresh.

// DefaultStatsPeriod is how often the sampler reads every object's stats.
const DefaultStatsPeriod = 10 * time.Second

// statsCache holds the newest sample of each running container and ready
// pod (pod entries without their containers: those come from ctrs).
type statsCache struct {
	ctrs samples[ContainerStats]
	pods samples[PodStats]
}

// samples is one kind of sample by object ID.
type samples[T any] struct {
	mu sync.RWMutex
	m  map[string]*T
}

func (s *samples[T]) get(id string) (*T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[id]
	return v, ok
}

func (s *samples[T]) put(id string, v *T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*T{}
	}
	s.m[id] = v
}

// replace swaps in a full round: objects gone since the last one drop out.
func (s *samples[T]) replace(m map[string]*T) {
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

// SampledContainerStats is the newest sample of a container's stats (see
// the top of this file); ContainerStats when sampling is off.
func (m *Manager) SampledContainerStats(id string) (*ContainerStats, error) {
	if m.cfg.StatsPeriod <= 0 {
		return m.ContainerStats(id)
	}
	if st, ok := m.stats.ctrs.get(id); ok {
		return st, nil
	}
	st, err := m.ContainerStats(id)
	if err == nil {
		m.stats.ctrs.put(id, st)
	}
	return st, err
}

// SampledPodStatsOf is the newest sample of a pod's stats (see the top of
// this file) with its running containers' (the caller groups them once for
// all pods); read now when sampling is off.
func (m *Manager) SampledPodStatsOf(sb *Sandbox, running []*Container) *PodStats {
	// With sampling off nothing is ever kept, so every call reads.
	level, ok := m.stats.pods.get(sb.ID)
	if !ok {
		level = m.podLevelStats(sb)
		if sb.State == SandboxReady && m.cfg.StatsPeriod > 0 {
			m.stats.pods.put(sb.ID, level)
		}
	}
	// A copy: the cached sample is shared by concurrent callers.
	out := *level
	out.Containers = make(map[string]*ContainerStats, len(running))
	for _, c := range running {
		if cs, err := m.SampledContainerStats(c.ID); err == nil {
			out.Containers[c.ID] = cs
		}
	}
	return &out
}

// sampleStats reads every running container's and ready pod's stats every
// StatsPeriod, the first round at once, until ctx ends.
func (m *Manager) sampleStats(ctx context.Context) {
	if m.cfg.StatsPeriod <= 0 {
		return
	}
	t := time.NewTicker(m.cfg.StatsPeriod)
	defer t.Stop()
	for {
		start := time.Now()
		n := m.sampleStatsRound()
		klog.FromContext(ctx).V(5).Info("Sampled stats", "objects", n, "took", time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleStatsRound reads every running container and ready pod, one at a
// time, and replaces the cache with the result. One at a time on purpose:
// a round is background work (~1 ms per object), and spread over one core
// it leaves the others to the RPCs it exists to make fast.
func (m *Manager) sampleStatsRound() int {
	ctrs := map[string]*ContainerStats{}
	pods := map[string]*PodStats{}
	for _, c := range m.containers.list() {
		if c.State != ContainerRunning {
			continue
		}
		if st, err := m.ContainerStats(c.ID); err == nil {
			ctrs[c.ID] = st
		}
	}
	for _, sb := range m.sandboxes.list() {
		if sb.State == SandboxReady {
			pods[sb.ID] = m.podLevelStats(sb)
		}
	}
	m.stats.ctrs.replace(ctrs)
	m.stats.pods.replace(pods)
	return len(ctrs) + len(pods)
}
