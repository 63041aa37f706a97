package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if _, err := s.Pods.Pod(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return s.Streaming.GetPortForward(req)
}
