// Package ipam hands out pod IPs from a node's pod subnet and splits a
// cluster CIDR into node subnets.
//
// It is pure allocation plus a small persistence interface ([Store]): it knows
// nothing of CNI or netlink, so the CNI plugin (pkg/bridge) and the node agent
// (pkg/agent) share it and tests drive it with the in-memory [MemStore].
//
// Guarantees, and why:
//   - Round-robin: a new reservation starts after the last one handed out in
//     the range, so a crash-looping pod does not get the address another pod
//     just released (stale conntrack/ARP entries would point at the new pod).
//   - The network address, the gateway (first host) and the last address are
//     never handed out.
//   - Reservations are keyed by (containerID, ifname) and released only by that
//     key, never by IP alone: a late DEL for an old container must not free
//     the address a new container already holds.
//   - Reservations are scoped to the boot: each records the boot ID, and the
//     first allocation after a reboot reclaims every reservation of an earlier
//     boot without any DEL (after a reboot no runtime sends DEL for pods that
//     died with the machine; host-local leaks them: plugins#252).
//   - Safe under parallel ADDs from many processes: every operation runs under
//     the store's lock (an flock for the disk store).
package ipam
