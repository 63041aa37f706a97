package cri

import (
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
