# shellcheck shell=bash
# netns.sh: named network namespaces for the hack/ scripts, without leaving
# iproute2's /run/netns mount behind. The first `ip netns add` on a machine
# bind-mounts /run/netns on itself; a script that caused that mount removes
# it again when no named namespace is left.

# netns_add NAME: ip netns add NAME, remembering whether /run/netns was a
# mount point before this script's first namespace.
netns_add() {
	if [[ -z ${RUN_NETNS_WAS_MOUNTED:-} ]]; then
		RUN_NETNS_WAS_MOUNTED=0
		mountpoint -q /run/netns 2>/dev/null && RUN_NETNS_WAS_MOUNTED=1
	fi
	ip netns add "$1"
}

# netns_del NAME: ip netns delete NAME; then, if this script made the
# /run/netns mount and no namespace is pinned there any more, unmount it.
netns_del() {
	ip netns delete "$1" 2>/dev/null
	if [[ ${RUN_NETNS_WAS_MOUNTED:-1} == 0 ]] && mountpoint -q /run/netns &&
		[[ -z $(ls -A /run/netns 2>/dev/null) ]]; then
		umount /run/netns 2>/dev/null
	fi
	return 0
}
