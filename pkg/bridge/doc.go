// Package bridge implements the CNI verbs of cni-bridge (ADD, DEL, CHECK,
// STATUS, GC; VERSION is answered by skel): a Linux bridge on the node, a veth
// per pod, an address per family from pkg/ipam, a default route, masquerade
// and hostPort mappings through one nftables table.
//
// The verbs are methods of [Plugin], whose fields carry the dependencies
// (boot ID, fault injection), so tests call them directly as well as through
// the built binary.
//
// What the plugin owns on a node, and how it names it:
//   - the bridge (config "bridge", default cni0) with the gateway addresses;
//   - host veths named "cbr" + 12 hex digits of sha256(containerID/ifname), so
//     DEL and GC find them without the pod's netns;
//   - the nftables table "inet cni_bridge"; every rule carries userdata naming
//     its network and, for per-pod rules, the attachment;
//   - "<dataDir>/<network name>/": the IPAM store and the subnets in use.
package bridge
