package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageStatus returns a nil image, not an error, when it is absent (the
// CRI's contract: kubelet pulls then).
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	if req.GetImage().GetImage() == "" {
		return nil, invalidf("image reference is required")
	}
	img, err := s.Images.Get(req.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toImage(img)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": verboseInfo(img)}
	}
	return resp, nil
}
