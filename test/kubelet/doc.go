// Package kubelet holds end-to-end tests that run a real kubelet (and, for
// the cluster tests, a real control plane and kube-proxy) against cri-shim,
// cni-bridge and cni-bridge-agent.
//
// Each node is a network namespace with its own mount, UTS and IPC
// namespaces and its own cgroup root; a "hub" namespace holds the node
// network's bridge, the test image registry and the control plane. Nothing
// is made in the machine's own network namespace, and every process, mount,
// namespace and cgroup a test makes is removed when it ends.
//
// The tests are slow and need root, the Kubernetes binaries and the
// project's binaries, so they run only when KUBELET_E2E=1 (hack/kubelet-e2e.sh
// builds everything and sets the variables); plain `go test ./...` skips them
// at once.
package kubelet
