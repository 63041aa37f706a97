// Package e2e holds end-to-end tests that drive the built binaries through
// their real clients: cni-bridge through libcni, cri-shim through its gRPC
// socket. Every network object they make lives in network namespaces the
// tests create and remove; they need root and skip without it.
package e2e
