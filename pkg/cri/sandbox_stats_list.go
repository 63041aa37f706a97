package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func (s *Server) listPodStats(f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	var out []*runtimeapi.PodSandboxStats
	for _, sb := range s.Pods.Pods() {
		if sb.State != pod.SandboxReady {
			continue
		}
		if f != nil && ((f.GetId() != "" && f.GetId() != sb.ID) || !matchLabels(sb.Config.GetLabels(), f.GetLabelSelector())) {
			continue
		}
		if st, err := s.podStats(sb); err == nil {
			out = append(out, st)
		}
	}
	return out
}

func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(req.GetFilter())}, nil
}
