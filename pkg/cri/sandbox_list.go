package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func filterSandbox(sb *pod.Sandbox, f *runtimeapi.PodSandboxFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && sb.ID != f.GetId() {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != sandboxState(sb) {
		return false
	}
	return matchLabels(sb.Config.GetLabels(), f.GetLabelSelector())
}

func (s *Server) listSandboxes(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.Pods.Pods() {
		if sb.State == pod.SandboxCreating || !filterSandbox(sb, f) {
			continue
		}
		out = append(out, toPodSandbox(sb))
	}
	return out
}

func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.listSandboxes(req.GetFilter())}, nil
}
