# shellcheck shell=bash
# netns.sh: named network namespaces for the hack/ scripts, without leaving
# iproute2's /run/netns mount behind. The first `ip netns add` on a machine
# bind-mounts /run/netns on itself; whichever of our scripts deletes the
# last named namespace removes that mount again, if one of our scripts made
# it. Scripts run concurrently (CI's critest runs beside a hack/run.sh, for
# instance), so "made by us" is a marker file shared by all of them, and
# adding and deleting happen under one lock (on /run itself, so no lock file
# is left): a per-script memory of who mounted it left the mount behind when
# two scripts overlapped.

NETNS_MARK=/run/cri-shim-dev-netns.mounted-by-us

# netns_add NAME: ip netns add NAME; marks /run/netns as ours when this
# call made the mount.
netns_add() {
	(
		flock 9
		local mounted=0
		mountpoint -q /run/netns 2>/dev/null && mounted=1
		ip netns add "$1" || exit 1
		if [[ $mounted == 0 ]] && mountpoint -q /run/netns 2>/dev/null; then
			: >"$NETNS_MARK"
		fi
	) 9</run
}

# netns_del NAME: ip netns delete NAME; then, if one of our scripts made the
# /run/netns mount and no namespace is pinned there any more, unmount it.
netns_del() {
	(
		flock 9
		ip netns delete "$1" 2>/dev/null
		if [[ -e $NETNS_MARK ]] && mountpoint -q /run/netns 2>/dev/null &&
			[[ -z $(ls -A /run/netns 2>/dev/null) ]]; then
			umount /run/netns 2>/dev/null && rm -f "$NETNS_MARK"
		fi
	) 9</run
	return 0
}
