package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func (s *Server) listContainerStats(f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	var out []*runtimeapi.ContainerStats
	running := map[string]bool{}
	for _, c := range s.Pods.Containers() {
		if c.State != pod.ContainerRunning {
			continue
		}
		running[c.ID] = true
		if f != nil && ((f.GetId() != "" && f.GetId() != c.ID) || (f.GetPodSandboxId() != "" && f.GetPodSandboxId() != c.SandboxID) ||
			!matchLabels(c.Config.GetLabels(), f.GetLabelSelector())) {
			continue
		}
		// The sampler's newest: kubelet lists every container's stats
		// often (pkg/pod/stats_cache.go).
		if st, err := s.Pods.SampledContainerStats(c.ID); err == nil {
			out = append(out, s.protos.get(c, st))
		}
	}
	if f == nil || f.GetId() == "" && f.GetPodSandboxId() == "" && len(f.GetLabelSelector()) == 0 {
		s.protos.keepOnly(running)
	}
	return out
}

func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(req.GetFilter())}, nil
}
