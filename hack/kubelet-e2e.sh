#!/usr/bin/env bash
# kubelet-e2e.sh: the kubelet end-to-end tests, in one command (as root):
#
#   sudo hack/kubelet-e2e.sh [go test flags, e.g. -run TestStandaloneKubelet]
#
# 1. installs the Debian packages (runc, CNI plugins, busybox, containerd,
#    etcd-server), with no daemon started;
# 2. builds Kubernetes (kubelet, kube-apiserver, kube-controller-manager,
#    kube-scheduler, kube-proxy, kubectl; hack/kube/build.sh, cached in
#    /var/cache/cri-shim-dev/kube-<version>: ~15 min the first time),
#    containerd 2.x (hack/lib/containerd2.sh, cached) and this tree's
#    binaries (hack/build.sh, hack/testimages);
# 3. runs the Go tests in test/kubelet with KUBELET_E2E=1: a standalone
#    kubelet with static pods; a 2-node cluster (etcd, apiserver,
#    controller-manager, scheduler, kubelet + cri-shim + cni-bridge +
#    cni-bridge-agent + kube-proxy per node); pod startup latency of cri-shim
#    against Debian's containerd 1.6 and containerd 2.x, all on cni-bridge;
# 4. prints a summary with the measured figures.
#
# Every node is a network namespace (eth0 on a bridge in a "hub" namespace
# that also holds the registry and the control plane) with private mount,
# UTS and IPC namespaces and a cgroup root of its own: nothing is made in
# the machine's network namespace, and the sysctls kubelet writes are
# private copies. The tests remove what they made; if they die, this script
# removes what is left of this run (processes by PID, mounts, namespaces,
# cgroups, temp dirs) and fails.
#
# Environment: KUBE_VERSION (v1.37.2), KUBE_PROXY_MODE (nftables|iptables),
# KUBELET_E2E_STARTUP_PODS (10), KUBELET_E2E_KEEP=1 (keep temp dirs),
# ARTIFACTS (default _output/kubelet-e2e: logs of every process).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export GOFLAGS=${GOFLAGS:--buildvcs=false}
RUN_ID=$$
T0=$SECONDS

log() { printf '[kubelet-e2e.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (namespaces, mounts, cgroups)"
ARTIFACTS=$(realpath -m "${ARTIFACTS:-$REPO/_output/kubelet-e2e}")
mkdir -p "$ARTIFACTS"
# Only what an earlier run put there: ARTIFACTS may name any directory.
(cd "$ARTIFACTS" && rm -rf -- test.log results.txt summary.txt Test*)

# ---------------------------------------------------------------------------
# Cleanup of whatever this run's tests did not remove (they were killed).

# pids_in_netns PIN: processes whose network namespace is the one pinned at PIN.
pids_in_netns() {
	local want p
	want=$(stat -L -c %i "$1" 2>/dev/null) || return 0
	for p in /proc/[0-9]*; do
		[[ $(stat -L -c %i "$p/ns/net" 2>/dev/null) == "$want" ]] && echo "${p#/proc/}"
	done
	return 0
}

leftover_cleanup() {
	local found=0 d pin pid root id m cg
	for d in /tmp/kubelet-e2e-"$RUN_ID"-*; do
		[[ -d $d ]] || continue
		found=1
		log "LEFTOVER: $d"
		for pin in "$d"/netns/*; do
			for pid in $(pids_in_netns "$pin"); do
				log "LEFTOVER: process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)): SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			done
		done
		find "$d" -name state.json -size -1M 2>/dev/null | while read -r f; do
			grep -q '"init_process_pid"' "$f" 2>/dev/null && dirname "$(dirname "$f")"
		done | sort -u | while read -r root; do
			for id in $(runc --root "$root" list -q 2>/dev/null); do
				log "LEFTOVER: runc container $id: delete --force"
				runc --root "$root" delete --force "$id" || true
			done
		done
	done
	for m in $(awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo | sort -u); do
		for cg in "$m"/kubelet-e2e-"$RUN_ID"-*; do
			[[ -d $cg ]] || continue
			found=1
			log "LEFTOVER: cgroup $cg"
			find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r pid; do
				kill -KILL "$pid" 2>/dev/null || true
			done
			sleep 0.5
			find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || log "cannot remove $cg"
		done
	done
	for d in /tmp/kubelet-e2e-"$RUN_ID"-*; do
		[[ -d $d ]] || continue
		awk -v d="$d" 'index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
		[[ ${KUBELET_E2E_KEEP:-} == 1 ]] || rm -rf --one-file-system "$d"
	done
	for d in /dev/shm/kubelet-e2e-"$RUN_ID"-*; do
		[[ -e $d ]] || continue
		found=1
		rm -rf "$d"
	done
	return $found
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [[ -n ${TEST_PID:-} ]] && kill -0 "$TEST_PID" 2>/dev/null; then
		log "stopping the tests (pid $TEST_PID)"
		kill -TERM "$TEST_PID" 2>/dev/null
		for ((i = 0; i < 1200; i++)); do kill -0 "$TEST_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$TEST_PID" 2>/dev/null
		wait "$TEST_PID" 2>/dev/null
	fi
	if ! leftover_cleanup; then
		log "the tests left something behind (removed now)"
		[[ $rc == 0 ]] && rc=1
	fi
	[[ -n ${WORK:-} ]] && rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------
# 1. Dependencies

t=$SECONDS
"$REPO/hack/install-deps.sh" --reference
missing=()
for p in etcd-server iptables; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
	log "installing ${missing[*]} (no daemon is started)"
	created_policy=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		created_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
fi
T_DEPS=$((SECONDS - t))

# ---------------------------------------------------------------------------
# 2. Builds

t=$SECONDS
KUBE_BIN_DIR=$("$REPO/hack/kube/build.sh")
# containerd 2.x, the second reference of the startup test (cached; several
# minutes the first time).
# shellcheck source=hack/lib/containerd2.sh
source "$REPO/hack/lib/containerd2.sh"
build_containerd2
T_KUBE=$((SECONDS - t))
t=$SECONDS
WORK=$(mktemp -d /tmp/kubelet-e2e-work.XXXXXX)
chmod 755 "$WORK"
log "building cri-shim, cni-bridge, cni-bridge-agent, testimages and the test binary"
(
	cd "$REPO"
	hack/build.sh "$WORK/bin" >&2
	go build -o "$WORK/bin/testimages" ./hack/testimages
	go test -c -o "$WORK/kubelet.test" ./test/kubelet
)
TESTIMAGES_CACHE=${TESTIMAGES_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/cri-shim-testimages}
T_BUILD=$((SECONDS - t))

# ---------------------------------------------------------------------------
# 3. Tests

t=$SECONDS
RESULTS=$ARTIFACTS/results.txt
: >"$RESULTS"
log "running test/kubelet (Kubernetes $("$KUBE_BIN_DIR/kubelet" --version | awk '{print $2}'); log: $ARTIFACTS/test.log)"
args=(-test.v -test.timeout 60m)
# go test flags (-run X, -count=1) as the test binary spells them (-test.run X).
for a in "$@"; do
	if [[ $a == -* && $a != -test.* ]]; then
		a=-test.${a#"${a%%[!-]*}"}
	fi
	args+=("$a")
done
(
	cd "$REPO/test/kubelet"
	exec env KUBELET_E2E=1 KUBELET_E2E_RUN_ID="$RUN_ID" KUBE_BIN_DIR="$KUBE_BIN_DIR" CRI_SHIM_BIN_DIR="$WORK/bin" \
		ETCD="$(command -v etcd)" CONTAINERD="$(command -v containerd)" CONTAINERD2_DIR="$CONTAINERD2_DIR" \
		CNI_PLUGINS_DIR=/usr/lib/cni \
		TESTIMAGES_CACHE="$TESTIMAGES_CACHE" KUBELET_E2E_ARTIFACTS="$ARTIFACTS" KUBELET_E2E_RESULTS="$RESULTS" \
		"$WORK/kubelet.test" "${args[@]}"
) > >(tee "$ARTIFACTS/test.log") 2>&1 &
TEST_PID=$!
rc=0
wait "$TEST_PID" || rc=$?
TEST_PID=
T_TEST=$((SECONDS - t))

# ---------------------------------------------------------------------------
# 4. Summary (after the cleanup check, so that leftovers fail the run)

trap - EXIT
( cleanup ) || { [[ $rc == 0 ]] && rc=1; }
WORK=
{
	echo
	echo "=== kubelet e2e summary ==="
	grep -E '^ *--- (PASS|FAIL|SKIP)' "$ARTIFACTS/test.log" | sed 's/^/  /' || true
	if [[ -s $RESULTS ]]; then
		echo "measured:"
		sed 's/^/  /' "$RESULTS"
	fi
	echo "wall time: ${T_DEPS}s deps, ${T_KUBE}s Kubernetes build, ${T_BUILD}s project build, ${T_TEST}s tests; $((SECONDS - T0))s in all"
	echo "logs: $ARTIFACTS"
	passed=$(grep -cE '^--- PASS' "$ARTIFACTS/test.log" || true)
	failed=$(grep -cE '^--- FAIL' "$ARTIFACTS/test.log" || true)
	skipped=$(grep -cE '^--- SKIP' "$ARTIFACTS/test.log" || true)
	echo "kubelet-e2e: $passed passed, $failed failed, $skipped skipped"
} | tee "$ARTIFACTS/summary.txt"
[[ $rc == 0 ]] || log "FAILED (exit $rc)"
exit "$rc"
