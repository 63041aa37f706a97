package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.Pods.Container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.Pods.ContainerStats(c.ID)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: toContainerStats(c, st)}, nil
}
