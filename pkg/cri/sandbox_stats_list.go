package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func (s *Server) listPodStats(f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	var out []*runtimeapi.PodSandboxStats
	// Each pod's running containers, grouped once (110 pods x 330
	// containers would otherwise be 36,000 lookups per call).
	running := map[string][]*pod.Container{}
	live := map[string]bool{}
	for _, c := range s.Pods.Containers() {
		if c.State == pod.ContainerRunning {
			running[c.SandboxID] = append(running[c.SandboxID], c)
			live[c.ID] = true
		}
	}
	if f == nil || f.GetId() == "" && len(f.GetLabelSelector()) == 0 {
		defer s.protos.keepOnly(live)
	}
	for _, sb := range s.Pods.Pods() {
		if sb.State != pod.SandboxReady {
			continue
		}
		if f != nil && ((f.GetId() != "" && f.GetId() != sb.ID) || !matchLabels(sb.Config.GetLabels(), f.GetLabelSelector())) {
			continue
		}
		out = append(out, s.toPodStats(sb, s.Pods.SampledPodStatsOf(sb, running[sb.ID]), running[sb.ID]))
	}
	return out
}

func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(req.GetFilter())}, nil
}
