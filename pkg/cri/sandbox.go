package cri

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

var errFailedPrecondition = errdefs.ErrFailedPrecondition

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

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

func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if err := s.Pods.StopPod(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if err := s.Pods.RemovePod(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

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
