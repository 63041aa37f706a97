package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/image"
)

func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	want := req.GetFilter().GetImage().GetImage()
	var match *image.Image
	if want != "" {
		var err error
		if match, err = s.Images.Get(want); err != nil {
			if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
				return &runtimeapi.ListImagesResponse{}, nil
			}
			return nil, err
		}
	}
	resp := &runtimeapi.ListImagesResponse{}
	for _, img := range s.Images.List() {
		if match == nil || img.ID == match.ID {
			resp.Images = append(resp.Images, toImage(img))
		}
	}
	return resp, nil
}
