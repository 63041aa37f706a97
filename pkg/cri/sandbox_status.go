package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.Pods.Pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: toPodSandboxStatus(sb), Timestamp: nowNano()}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": verboseInfo(sb)}
	}
	// Since cri-api 1.26 the containers of the pod come with it (used by
	// kubelet's evented PLEG).
	for _, c := range s.Pods.Containers() {
		if c.SandboxID == sb.ID {
			resp.ContainersStatuses = append(resp.ContainersStatuses, toContainerStatus(c))
		}
	}
	return resp, nil
}
