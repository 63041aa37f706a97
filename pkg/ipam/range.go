package ipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
)

// Range is the allocatable part of one pod subnet.
type Range struct {
	// Subnet is the pod subnet, masked.
	Subnet netip.Prefix
	// Gateway is the first host address; it lives on the node's bridge.
	Gateway netip.Addr
	first   netip.Addr // first address handed to pods
	last    netip.Addr // last address handed to pods
}

// NewRange returns the range of a pod subnet: network address, gateway and
// the last address (IPv4 broadcast; for IPv6 kept symmetric) excluded. The
// subnet must leave at least one address for a pod (IPv4 /30, IPv6 /126).
func NewRange(subnet netip.Prefix) (Range, error) {
	if !subnet.IsValid() {
		return Range{}, errors.New("invalid subnet")
	}
	subnet = subnet.Masked()
	if subnet.Addr().Is4In6() {
		return Range{}, fmt.Errorf("subnet %s: IPv4-mapped IPv6 subnets are not supported", subnet)
	}
	if subnet.Addr().BitLen()-subnet.Bits() < 2 {
		return Range{}, fmt.Errorf("subnet %s is too small: it needs room for a network address, a gateway, one pod and a broadcast address (at most /%d)", subnet, subnet.Addr().BitLen()-2)
	}
	gw := subnet.Addr().Next()
	return Range{
		Subnet:  subnet,
		Gateway: gw,
		first:   gw.Next(),
		last:    lastAddr(subnet).Prev(),
	}, nil
}

// ID names the range in the store (for the round-robin cursor).
func (r Range) ID() string { return r.Subnet.String() }

// Contains reports whether ip may be handed out from this range.
func (r Range) Contains(ip netip.Addr) bool {
	return r.Subnet.Contains(ip) && ip.Compare(r.first) >= 0 && ip.Compare(r.last) <= 0
}

// Size is the number of addresses pods can get, saturated at MaxUint64.
func (r Range) Size() uint64 {
	n := new(big.Int).Sub(new(big.Int).SetBytes(r.last.AsSlice()), new(big.Int).SetBytes(r.first.AsSlice()))
	n.Add(n, big.NewInt(1))
	if !n.IsUint64() {
		return ^uint64(0)
	}
	return n.Uint64()
}

// next returns the address after ip in the range, wrapping at the end.
func (r Range) next(ip netip.Addr) netip.Addr {
	if !r.Contains(ip) || ip == r.last {
		return r.first
	}
	return ip.Next()
}

// lastAddr is the all-ones host address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
