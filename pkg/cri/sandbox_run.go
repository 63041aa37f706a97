package cri

import (
	"context"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := validatePodConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	if !slices.Contains(pod.RuntimeHandlers, req.GetRuntimeHandler()) {
		return nil, invalidf("unknown runtime handler %q (known: %q)", req.GetRuntimeHandler(), pod.RuntimeHandlers)
	}
	id, err := s.Pods.RunPod(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}
