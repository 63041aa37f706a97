package cri

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// RPCMetrics are the CRI calls' Prometheus metrics: latency and count by
// method and status code, served at --metrics-address. They show where
// kubelet's time goes in cri-shim (RunPodSandbox, CreateContainer, the
// PLEG's list calls, ...) without tracing.
type RPCMetrics struct {
	duration *prometheus.HistogramVec
}

// NewRPCMetrics registers the metrics on reg.
func NewRPCMetrics(reg prometheus.Registerer) (*RPCMetrics, error) {
	m := &RPCMetrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "cri_shim_grpc_request_duration_seconds",
		Help: "Duration of CRI calls by method (RunPodSandbox, ListContainers, ...) and gRPC status code.",
		// 100 us to ~26 s: status calls take ~0.2 ms, a pod start ~100 ms, a pull seconds.
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 19),
	}, []string{"method", "code"})}
	if err := reg.Register(m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// unary is an interceptor that observes each unary call (after the error
// mapping, so the code is the one the client sees).
func (m *RPCMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.duration.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}
