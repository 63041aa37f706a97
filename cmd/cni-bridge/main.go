// Command cni-bridge is a CNI 1.1 plugin: a Linux bridge, a veth per pod, an
// address from the node's pod subnet, masquerade and hostPort mappings. The
// work lives in pkg/bridge; this is the entry point the runtime executes.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/cri-shim/cri-shim/pkg/bridge"
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() {
	p := &bridge.Plugin{}
	skel.PluginMainFuncs(p.Funcs(), version.All, "cni-bridge "+Version+": bridge + veth + per-node IPAM + hostPort + masquerade")
}
