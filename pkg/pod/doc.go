// Package pod owns sandboxes and containers below the CRI: their records
// and state machines, the on-disk store, recovery at start-up, and the
// orchestration of the other packages (netns, CNI, the monitor, the OCI
// runtime, images) with rollback of everything a failed step made.
//
// It returns errdefs sentinels wrapped with context; pkg/cri turns them into
// gRPC codes. CRI configs come in as cri-api types; they are turned into OCI
// specs by the SpecOpt builders in spec.go.
package pod
