// Package cri serves the CRI (runtime.v1 RuntimeService and ImageService)
// over gRPC. Handlers are thin: validate the request, call one pkg/pod or
// pkg/image method, convert the answer. Errors become gRPC codes in one
// interceptor (interceptor.go), which also logs each call once.
package cri
