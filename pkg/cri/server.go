package cri

import (
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/pod"
)

// Version strings reported by Version.
const (
	RuntimeName       = "cri-shim"
	RuntimeAPIVersion = "v1"
)

// Server implements the CRI services.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	Pods           *pod.Manager
	Images         *image.Store
	Streaming      streaming.Server
	RuntimeVersion string
	CgroupDriver   string
	// AppArmor: the host has AppArmor on, so containers are confined
	// (verbose Status says so).
	AppArmor bool

	protos statsProtos
}

// ServerOptions are the gRPC server options cri-shim serves with: the
// interceptors that map errors to codes, log calls and (with m) measure
// them, and kubelet's 16 MiB message limits.
func ServerOptions(m *RPCMetrics) []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{unaryInterceptor}
	if m != nil {
		// Outermost: it sees the code the client gets.
		unary = append([]grpc.UnaryServerInterceptor{m.unary}, unary...)
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(streamInterceptor),
		// kubelet's limit on what it receives; ours on what we accept.
		grpc.MaxRecvMsgSize(16 << 20),
		grpc.MaxSendMsgSize(16 << 20),
	}
}

// Register adds both services to gs.
func (s *Server) Register(gs *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(gs, s)
	runtimeapi.RegisterImageServiceServer(gs, s)
	gs.RegisterService(&importServiceDesc, s)
}
