// Package runtime drives the OCI runtime (runc; crun takes the same command
// line) and owns what a container is made of below the CRI: the bundle
// (config.json + rootfs), the OCI spec composed from small SpecOpt functions,
// cgroups (v1 and v2, through containerd/cgroups/v3) and their statistics.
//
// It knows nothing of CRI types: pkg/pod maps CRI configs onto the options
// here.
package runtime
