package cri

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// TestRPCMetrics: each call is observed once under its short method name
// and the code the client gets (after the error mapping).
func TestRPCMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method string, herr error) {
		info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/" + method}
		h := func(ctx context.Context, req any) (any, error) { return nil, herr }
		// As ServerOptions chains them: metrics outside the error mapping.
		m.unary(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) {
			return unaryInterceptor(ctx, req, info, h)
		})
	}
	call("RunPodSandbox", nil)
	call("RunPodSandbox", nil)
	call("RunPodSandbox", fmt.Errorf("bad config: %w", errdefs.ErrInvalidArgument))
	call("ContainerStatus", fmt.Errorf("container %q: %w", "x", errdefs.ErrNotFound))

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "cri_shim_grpc_request_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["method"]+" "+labels["code"]] = s.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{"RunPodSandbox OK": 2, "RunPodSandbox InvalidArgument": 1, "ContainerStatus NotFound": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v", got, want)
	}
	if _, err := NewRPCMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}
