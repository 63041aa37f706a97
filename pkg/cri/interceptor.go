package cri

import (
	"context"
	"errors"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// toStatus maps domain errors (errdefs sentinels, context errors) to gRPC
// codes; the message is the error's, which says what went wrong and where.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errdefs.IsInvalidArgument(err):
		code = codes.InvalidArgument
	case errdefs.IsNotFound(err):
		code = codes.NotFound
	case errdefs.IsAlreadyExists(err):
		code = codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		code = codes.FailedPrecondition
	case errdefs.IsUnauthorized(err):
		code = codes.Unauthenticated
	case errdefs.IsPermissionDenied(err):
		code = codes.PermissionDenied
	case errdefs.IsDataLoss(err):
		code = codes.DataLoss
	case errdefs.IsNotImplemented(err):
		code = codes.Unimplemented
	case errdefs.IsUnavailable(err):
		code = codes.Unavailable
	case errdefs.IsResourceExhausted(err):
		code = codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded), errdefs.IsDeadlineExceeded(err):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled), errdefs.IsCanceled(err):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// quietMethods are polled constantly by kubelet; they are logged only at
// high verbosity.
var quietMethods = map[string]bool{
	"/runtime.v1.RuntimeService/ListPodSandbox": true, "/runtime.v1.RuntimeService/ListContainers": true,
	"/runtime.v1.RuntimeService/PodSandboxStatus": true, "/runtime.v1.RuntimeService/ContainerStatus": true,
	"/runtime.v1.RuntimeService/Status": true, "/runtime.v1.RuntimeService/Version": true,
	"/runtime.v1.ImageService/ImageStatus": true, "/runtime.v1.ImageService/ListImages": true,
	"/runtime.v1.ImageService/ImageFsInfo": true, "/runtime.v1.RuntimeService/ListContainerStats": true,
	"/runtime.v1.RuntimeService/ListPodSandboxStats": true,
}

// unaryInterceptor logs each call once and turns its error into a status.
func unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	logger := klog.FromContext(ctx).WithValues("method", info.FullMethod)
	resp, err := handler(klog.NewContext(ctx, logger), req)
	err = toStatus(err)
	level := 2
	if quietMethods[info.FullMethod] {
		level = 5
	}
	if err != nil {
		if st, _ := status.FromError(err); st.Code() == codes.NotFound || st.Code() == codes.InvalidArgument || st.Code() == codes.AlreadyExists {
			logger.V(2).Info("Request refused", "code", st.Code(), "err", st.Message(), "duration", time.Since(start))
		} else {
			logger.Error(err, "Request failed", "duration", time.Since(start))
		}
	} else {
		logger.V(level).Info("Request done", "duration", time.Since(start))
	}
	return resp, err
}

func streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := toStatus(handler(srv, ss))
	if err != nil {
		klog.FromContext(ss.Context()).V(2).Info("Stream ended", "method", info.FullMethod, "err", err)
	}
	return err
}
