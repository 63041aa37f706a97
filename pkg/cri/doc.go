// Package cri serves the CRI (runtime.v1 RuntimeService and ImageService)
// over gRPC. Handlers are thin: validate the request, call one pkg/pod or
// pkg/image method, convert the answer. Errors become gRPC codes in one
// interceptor (interceptor.go), which also logs each call once.
//
// Each RPC has its own file, named after it: RunPodSandbox in
// sandbox_run.go, ListContainers in container_list.go (its Stream variant
// in container_list_stream.go), PullImage in image_pull.go, and cri-shim's
// own crishim.v1.Images/Import in image_import.go. Shared code has its own
// files: the wiring in server.go, conversions to CRI messages in convert.go
// and stats.go, request checks in validate.go, the exec/attach/port-forward
// HTTP server in streaming.go.
package cri
