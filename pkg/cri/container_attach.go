package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	c, err := s.Pods.Container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != pod.ContainerRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errFailedPrecondition)
	}
	return s.Streaming.GetAttach(req)
}
