package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// GetContainerEvents streams container lifecycle events (CREATED, STARTED,
// STOPPED, DELETED) with the pod's status and its containers' statuses, as
// kubelet's evented PLEG expects. Sandbox events carry the sandbox ID as
// container ID, as containerd sends them.
func (s *Server) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	events, cancel := s.Pods.Subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case e, ok := <-events:
			if !ok {
				return nil
			}
			resp := &runtimeapi.ContainerEventResponse{
				ContainerId:        e.ContainerID,
				ContainerEventType: e.Type,
				CreatedAt:          e.Time.UnixNano(),
			}
			if sb, err := s.Pods.Pod(e.SandboxID); err == nil {
				resp.PodSandboxStatus = toPodSandboxStatus(sb)
				for _, c := range s.Pods.Containers() {
					if c.SandboxID == sb.ID {
						resp.ContainersStatuses = append(resp.ContainersStatuses, toContainerStatus(c))
					}
				}
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, fmt.Errorf("checkpointing containers is not supported by cri-shim: %w", errdefs.ErrNotImplemented)
}

func (s *Server) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, fmt.Errorf("checkpointing pods is not supported by cri-shim: %w", errdefs.ErrNotImplemented)
}

func (s *Server) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, fmt.Errorf("restoring pods is not supported by cri-shim: %w", errdefs.ErrNotImplemented)
}

// ListMetricDescriptors: cri-shim exports no metrics beyond the CRI stats
// (kubelet then takes everything from ListPodSandboxStats).
func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{}, nil
}

func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{}, nil
}

// UpdatePodSandboxResources is informational with the cgroupfs driver:
// kubelet itself resizes the pod cgroup that every container of the pod
// lives under; the runtime has nothing further to apply (containerd without
// NRI does the same).
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if _, err := s.Pods.Pod(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
