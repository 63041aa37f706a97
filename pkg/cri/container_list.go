package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func filterContainer(c *pod.Container, f *runtimeapi.ContainerFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && c.ID != f.GetId() {
		return false
	}
	if f.GetPodSandboxId() != "" && c.SandboxID != f.GetPodSandboxId() {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != containerState(c) {
		return false
	}
	return matchLabels(c.Config.GetLabels(), f.GetLabelSelector())
}

func (s *Server) listContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range s.Pods.Containers() {
		if c.State == pod.ContainerCreating || !filterContainer(c, f) {
			continue
		}
		out = append(out, toContainer(c))
	}
	return out
}

func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.listContainers(req.GetFilter())}, nil
}
