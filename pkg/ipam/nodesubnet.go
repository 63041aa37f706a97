package ipam

import (
	"fmt"
	"net/netip"
)

// NodeSubnet returns the index-th subnet of size /bits inside cluster, the way
// kube-controller-manager's --allocate-node-cidrs carves node pod CIDRs
// (10.244.0.0/16, /24, 3 -> 10.244.3.0/24). Distinct indexes give
// non-overlapping subnets.
func NodeSubnet(cluster netip.Prefix, bits int, index uint64) (netip.Prefix, error) {
	cluster = cluster.Masked()
	if bits < cluster.Bits() || bits > cluster.Addr().BitLen() {
		return netip.Prefix{}, fmt.Errorf("node subnet size /%d does not fit in cluster CIDR %s", bits, cluster)
	}
	hostBits := bits - cluster.Bits()
	if hostBits < 64 && index >= 1<<hostBits {
		return netip.Prefix{}, fmt.Errorf("cluster CIDR %s has only %d subnets of size /%d, index %d is out of range", cluster, uint64(1)<<hostBits, bits, index)
	}
	b := cluster.Addr().AsSlice()
	// Write index into the bits [cluster.Bits(), bits) of the address.
	for i := 0; i < hostBits; i++ {
		if index&(1<<i) != 0 {
			pos := bits - 1 - i
			b[pos/8] |= 1 << (7 - pos%8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, bits), nil
}
