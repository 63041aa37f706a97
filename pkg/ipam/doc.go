// Package ipam is the IPAM of the cni-bridge CNI plugin (pkg/bridge): it
// hands out pod addresses from the node's pod subnets and keeps track of
// who holds them.
//
//   - [Range] is the allocatable part of one pod subnet.
//   - [Allocator] reserves one address per range for an attachment
//     (Allocate, for CNI ADD), frees an attachment's addresses (Release, for
//     DEL), finds them again (Lookup, for CHECK), frees every reservation not
//     in a set of valid attachments (GC, for CNI GC) and counts a range's
//     addresses in use (Used, for STATUS).
//   - [Store] persists reservations; [DiskStore] is the plugin's (a file per
//     address under a directory, an flock), [MemStore] the tests'.
//
// It does not choose node subnets: they are the node's spec.podCIDRs,
// assigned by kube-controller-manager's --allocate-node-cidrs (or given to
// the agent with --pod-cidr) and written into the CNI config by
// cni-bridge-agent. It knows nothing of CNI or netlink, so tests drive it
// directly with the in-memory [MemStore].
//
// Guarantees, and why:
//   - Round-robin: a new reservation starts after the last one handed out in
//     the range, so a crash-looping pod does not get the address another pod
//     just released (stale conntrack/ARP entries would point at the new pod).
//   - The network address, the gateway (first host) and the last address are
//     never handed out.
//   - An attachment that already holds an address in a range keeps it (a
//     retried ADD gets the same answer); a failed Allocate leaves nothing new
//     reserved.
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
