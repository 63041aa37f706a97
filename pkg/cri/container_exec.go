package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	c, err := s.Pods.Container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != pod.ContainerRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errFailedPrecondition)
	}
	if len(req.GetCmd()) == 0 {
		return nil, invalidf("exec needs a command")
	}
	if !req.GetStdin() && !req.GetStdout() && !req.GetStderr() {
		return nil, invalidf("exec needs one of stdin, stdout or stderr")
	}
	return s.Streaming.GetExec(req)
}
