package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := validatePodConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	if !s.Pods.HasHandler(req.GetRuntimeHandler()) {
		var known []string
		for _, h := range s.Pods.HandlerRuntimes() {
			known = append(known, h.Name)
		}
		return nil, invalidf("unknown runtime handler %q (known: %q)", req.GetRuntimeHandler(), known)
	}
	id, err := s.Pods.RunPod(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}
