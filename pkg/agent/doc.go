// Package agent is the cni-bridge node agent: it turns the Node objects of
// the Kubernetes API into this node's CNI network config and into routes to
// every other node's pod subnet.
//
// It is stateless: the API server and the kernel are the truth, and every
// sync recomputes the desired state from them. The pieces are small so each
// can be tested alone:
//
//   - conflist.go: BuildConflist (pure: podCIDRs -> conflist JSON) and
//     WriteFileAtomic (temp file, fsync, rename; no write when unchanged).
//   - routes.go: DesiredRoutes (pure: Nodes -> routes) and PlanRoutes (pure:
//     desired vs. installed -> add/replace/delete).
//   - netlink.go: RouteReconciler, which applies a plan through the netlink
//     handle it is given and only ever touches routes carrying RouteProtocol.
//   - controller.go: the Node informer -> workqueue -> syncNode loop.
//   - standalone.go: the conflist from a flag, for a node without an API server.
//   - server.go and metrics.go: /healthz, /readyz and Prometheus /metrics.
//   - agent.go: the command-line Options and Run, which wires the above.
package agent
