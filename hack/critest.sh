#!/usr/bin/env bash
# critest.sh: run the CRI conformance suite (critest, cri-tools v1.36.0)
# offline against cri-shim or a reference runtime: Debian's containerd 1.6
# (containerd), or containerd 2.x built from the Go module proxy and cached
# (containerd2; hack/lib/containerd2.sh).
#
#   hack/critest.sh [--runtime cri-shim|containerd|containerd2] [--cni cni-bridge|reference]
#                   [--benchmark] [--exec CMD] [--known-failures FILE]
#                   [--known-skips FILE] [--pause-image REF] [--critest-version V] [--verbose] [--keep] [--artifacts DIR] [-- extra critest args]
#
# Everything runs inside a network namespace made for this run (crit-$$, lo
# up) with private mount, IPC and UTS namespaces: the test registry
# (hack/testimages serve on 127.0.0.1:5000, a mirror of registry.k8s.io,
# k8s.gcr.io, gcr.io, public.ecr.aws and docker.io), the runtime under test,
# and critest itself (it fetches pod IPs and 127.0.0.1:<hostPort>, makes bind
# mounts the runtime must see and runs ipcmk on the "host"). Bridges, veths,
# routes, iptables rules and pod IPs exist only in that namespace.
#
# critest, crictl and the ginkgo CLI are built once from the Go module proxy
# and cached in $CRITEST_TOOLS_DIR (default
# /var/cache/cri-shim-dev/tools/cri-tools-v1.36.0; --critest-version v1.37.0
# builds and uses that release instead, cached beside it).
#
# With --runtime cri-shim, ./cmd/cri-shim and ./cmd/cni-bridge are built from
# this tree with hack/build.sh (cri-shim, its monitor and pause, cni-bridge) and started as
#   cri-shim --listen SOCK --root DIR --state DIR --cni-conf-dir DIR
#            --cni-bin-dir DIR:/usr/lib/cni --registry-config-dir DIR
# (hack/critest/cri-shim-cni.conflist; hosts.toml mirrors in the registry dir).
#
# --cni picks the pod network of either runtime: cni-bridge (this tree's
# plugin, the default for cri-shim) or reference (Debian's bridge + host-local
# + portmap, the default for containerd). containerd with cni-bridge is the
# "works under another runtime" check: containerd 1.6 links libcni 1.1, which
# knows CNI versions up to 1.0.0, so its conflist says "cniVersion": "1.0.0".
#
# Exit status: non-zero when a spec failed (with --known-failures: when a spec
# not listed failed, or a listed one passed; with --known-skips also when the
# skipped set differs from the file's), or when the run left something
# behind. Logs and the JSON report are kept in --artifacts (default
# _output/critest/<runtime>).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$REPO/hack/critest.sh"
REGISTRY_ADDR=127.0.0.1:5000
SANDBOX_IMAGE=registry.k8s.io/pause:3.10
MIRRORED_HOSTS=(registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io)
ARTIFACT_FILES=(report.json critest.log runtime.log registry.log cleanup-rmp.log critest.rc crictl.yaml containerd.toml 10-pods.conflist)
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[critest.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=hack/lib/cri-tools.sh
source "$REPO/hack/lib/cri-tools.sh"
# shellcheck source=hack/lib/containerd2.sh
source "$REPO/hack/lib/containerd2.sh"
# shellcheck source=hack/lib/netns.sh
source "$REPO/hack/lib/netns.sh"

# ---------------------------------------------------------------------------
# Shared helpers

# pids_in_mntns NS_LINK: PIDs of the processes whose mount namespace is
# NS_LINK (like mnt:[4026532...]), except this shell.
pids_in_mntns() {
	local want=$1 p ns
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" || $p == "${BASHPID:-$$}" ]] && continue
		ns=$(readlink "/proc/$p/ns/mnt" 2>/dev/null) || continue
		[[ $ns == "$want" ]] && echo "$p"
	done
	return 0
}

# stop_pid PID NAME [SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
	local pid=$1 name=$2 secs=${3:-15} i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		# A stopped child of ours is a zombie until waited for.
		[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	log "$name (pid $pid) ignored SIGTERM for ${secs}s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# runc_roots DIR: runc state roots under DIR, wherever the runtime keeps them
# (the parents of <id>/state.json files that are runc's).
runc_roots() {
	find "$1" -xdev -name state.json -size -1M 2>/dev/null | while read -r f; do
		grep -q '"init_process_pid"' "$f" 2>/dev/null && dirname "$(dirname "$f")"
	done | sort -u
}

# delete_runc_leftovers DIR: force-delete containers still in a runc root
# under DIR (killing their processes and removing their cgroups).
delete_runc_leftovers() {
	local root id
	for root in $(runc_roots "$1"); do
		for id in $(runc --root "$root" list -q 2>/dev/null); do
			log "leftover runc container $id in $root: delete --force"
			runc --root "$root" delete --force "$id" >&2 || true
		done
	done
}

# unmount_under DIR: lazily unmount every mount point under DIR, deepest first.
unmount_under() {
	local dir=$1 m
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

# ---------------------------------------------------------------------------
# Inner part: runs inside the netns with private mount, IPC and UTS namespaces.

inner_cleanup() {
	local rc=$? pid f
	trap - EXIT TERM INT
	set +e
	log "cleaning up inside the namespace"
	# critest first (its own process group: ginkgo and the test nodes too), so
	# that it creates no more pods while they are removed.
	if [[ -n ${CRITEST_PID:-} ]] && kill -0 "$CRITEST_PID" 2>/dev/null; then
		kill -TERM -- "-$CRITEST_PID" 2>/dev/null
		sleep 2
		kill -KILL -- "-$CRITEST_PID" 2>/dev/null
		wait "$CRITEST_PID" 2>/dev/null
	fi
	if [[ -n ${CRI_SOCK:-} && -S $CRI_SOCK ]]; then
		# Explicit endpoints: never crictl's defaults (the machine's runtime).
		timeout 180 crictl --timeout 60s -r "unix://$CRI_SOCK" -i "unix://$CRI_SOCK" rmp -fa >"$TMP/cleanup-rmp.log" 2>&1 ||
			log "crictl rmp -fa failed (see $TMP/cleanup-rmp.log)"
	fi
	stop_pid "${RUNTIME_PID:-}" "$RUNTIME" 20
	# cri-shim's container monitor outlives it by design; stop it by its pid file.
	if [[ -f $TMP/cri-shim/state/monitor/monitor.pid ]]; then
		stop_pid "$(cat "$TMP/cri-shim/state/monitor/monitor.pid")" cri-shim-monitor 10
	fi
	# containerd's shims outlive it; so may cri-shim's monitor.
	for f in "$TMP"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
		[[ -f $f ]] && stop_pid "$(cat "$f")" "shim $(basename "$(dirname "$f")")" 10
	done
	delete_runc_leftovers "$TMP"
	stop_pid "${REGISTRY_PID:-}" registry 5
	# Anything else still in our mount namespace was started by this run.
	for pid in $(pids_in_mntns "$(readlink /proc/self/ns/mnt)"); do
		log "leftover process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)): SIGKILL"
		kill -KILL "$pid" 2>/dev/null
	done
	unmount_under "$TMP"
	exit "$rc"
}

wait_for() { # wait_for SECONDS DESCRIPTION PID COMMAND...
	local secs=$1 what=$2 pid=$3 i
	shift 3
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready"
		sleep 0.2
	done
	die "$what not ready after ${secs}s"
}

write_hosts_toml() { # write_hosts_toml DIR RUNTIME
	local dir=$1 runtime=$2 host server
	for host in "${MIRRORED_HOSTS[@]}"; do
		mkdir -p "$dir/$host"
		# cri-shim: the upstream server with the local registry as its mirror.
		# containerd: the local registry is the server too, so a pull never
		# falls back to the network; 1.6 also refuses a file with no [host].
		server="https://$host"
		[[ $runtime == containerd* ]] && server="http://$REGISTRY_ADDR"
		printf 'server = "%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
			"$server" "$REGISTRY_ADDR" >"$dir/$host/hosts.toml"
	done
}

# write_conflist: the pod network of this run (--cni) in $TMP/cni/net.d.
write_conflist() {
	mkdir -p "$TMP/cni/net.d" "$TMP/cni-bridge"
	local src=$REPO/hack/critest/containerd-cni.conflist version=()
	if [[ $CNI == cni-bridge ]]; then
		src=$REPO/hack/critest/cri-shim-cni.conflist
		# containerd 1.6's libcni cannot parse results newer than 1.0.0.
		[[ $RUNTIME == containerd ]] && version=(-e 's|"cniVersion": "1.1.0"|"cniVersion": "1.0.0"|')
	fi
	sed -e "s|@TMP@|$TMP|g" "${version[@]}" "$src" >"$TMP/cni/net.d/10-pods.conflist"
	cp "$TMP/cni/net.d/10-pods.conflist" "$TMP/10-pods.conflist"
}

start_containerd() {
	CRI_SOCK=$TMP/containerd.sock
	mkdir -p "$TMP/containerd" "$TMP/runc"
	local bin_dir=/usr/lib/cni config=$REPO/hack/critest/containerd.toml bin=containerd
	[[ $CNI == cni-bridge ]] && bin_dir=$TMP/cni-bin
	if [[ $RUNTIME == containerd2 ]]; then
		# Its own daemon and shim first on PATH (containerd finds the shim
		# there), before Debian's 1.6 ones.
		config=$REPO/hack/critest/containerd2.toml bin=$CONTAINERD2_DIR/containerd
		export PATH=$CONTAINERD2_DIR:$PATH
	fi
	sed -e "s|@TMP@|$TMP|g" -e "s|@SANDBOX_IMAGE@|$SANDBOX_IMAGE|g" -e "s|@CNI_BIN_DIR@|$bin_dir|g" \
		"$config" >"$TMP/containerd.toml"
	write_conflist
	write_hosts_toml "$TMP/certs.d" containerd
	"$bin" --config "$TMP/containerd.toml" --log-level info >"$TMP/runtime.log" 2>&1 &
	RUNTIME_PID=$!
}

start_cri_shim() {
	mkdir -p "$TMP/cri-shim/root" "$TMP/cri-shim/state"
	write_conflist
	write_hosts_toml "$TMP/certs.d" cri-shim
	CRI_SOCK=$TMP/cri-shim/cri-shim.sock
	"$TMP/bin/cri-shim" \
		--listen "$CRI_SOCK" \
		--root "$TMP/cri-shim/root" \
		--state "$TMP/cri-shim/state" \
		--cni-conf-dir "$TMP/cni/net.d" \
		--cni-bin-dir "$TMP/cni-bin:/usr/lib/cni" \
		--registry-config-dir "$TMP/certs.d" \
		${PAUSE_IMAGE:+--pause-image "$PAUSE_IMAGE"} \
		>"$TMP/runtime.log" 2>&1 &
	RUNTIME_PID=$!
}

inner() {
	export PATH="$TOOLS_DIR:$PATH" CRI_CONFIG_FILE=$TMP/crictl.yaml
	trap inner_cleanup EXIT
	trap 'log "interrupted"; exit 130' TERM INT
	readlink /proc/self/ns/mnt >"$TMP/mntns"
	hostname critest-node

	# libcni keeps its result cache in /var/lib/cni: give this run its own.
	mkdir -p "$TMP/var-lib-cni"
	mount --bind "$TMP/var-lib-cni" /var/lib/cni

	"$TMP/bin/testimages" serve --addr "$REGISTRY_ADDR" --ready-file "$TMP/registry.ready" \
		--cache-dir "$TESTIMAGES_CACHE" >"$TMP/registry.log" 2>&1 &
	REGISTRY_PID=$!
	wait_for 300 "test registry" "$REGISTRY_PID" test -s "$TMP/registry.ready"

	case $RUNTIME in
	containerd | containerd2) start_containerd ;;
	cri-shim) start_cri_shim ;;
	esac
	printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$CRI_SOCK" "$CRI_SOCK" >"$TMP/crictl.yaml"
	wait_for 60 "$RUNTIME" "$RUNTIME_PID" crictl --timeout 2s version
	crictl version | sed 's/^/  /' >&2

	if [[ -n ${EXEC_CMD:-} ]]; then
		# --exec: the same runtime setup, another program instead of critest
		# (benchmarks). It gets the socket and the run's directories.
		log "running: $EXEC_CMD"
		local rc=0
		(cd "$REPO" && CRI_SOCK=$CRI_SOCK RUNTIME=$RUNTIME RUN_DIR=$TMP RUNTIME_PID=$RUNTIME_PID \
			bash -c "$EXEC_CMD") >"$TMP/exec.log" 2>&1 || rc=$?
		echo "$rc" >"$TMP/exec.rc"
		return 0
	fi

	local args=(
		--runtime-endpoint "unix://$CRI_SOCK"
		--image-endpoint "unix://$CRI_SOCK"
		--ginkgo.json-report "$TMP/report.json"
		--ginkgo.no-color
	)
	if [[ $BENCHMARK == 1 ]]; then
		# --benchmark forces succinct output and refuses --ginkgo.v.
		mkdir -p "$TMP/benchmark"
		args+=(--benchmark --benchmarking-params-file "$REPO/hack/critest/benchmark-params.yaml"
			--benchmarking-output-dir "$TMP/benchmark")
	else
		args+=(--parallel=2 --ginkgo.v --ginkgo.skip 'public image with digest')
	fi
	local extra=()
	[[ -n ${CRITEST_EXTRA_ARGS:-} ]] && mapfile -d $'\x1f' -t extra < <(printf '%s' "$CRITEST_EXTRA_ARGS")

	mkdir -p "$TMP/work" "$TMP/tmp"
	log "running critest $CRI_TOOLS_VERSION against $RUNTIME with $CNI CNI (log: $ARTIFACTS/critest.log)"
	local start=$SECONDS rc=0
	(
		cd "$TMP/work"
		export TMPDIR=$TMP/tmp
		# setsid: a process group of its own, to stop ginkgo's nodes with it.
		if [[ $VERBOSE == 1 ]]; then
			exec setsid critest "${args[@]}" "${extra[@]}" > >(tee "$TMP/critest.log") 2>&1
		else
			exec setsid critest "${args[@]}" "${extra[@]}" >"$TMP/critest.log" 2>&1
		fi
	) &
	CRITEST_PID=$!
	wait "$CRITEST_PID" || rc=$?
	CRITEST_PID=
	echo "$rc" >"$TMP/critest.rc"
	log "critest exited $rc after $((SECONDS - start))s"
	return 0
}

# ---------------------------------------------------------------------------
# Outer part: builds, namespaces, cleanup and the verdict, in the host namespaces.

# cgroup_dirs: every cgroup directory up to 3 levels below each hierarchy.
cgroup_dirs() {
	local m
	awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo | sort -u | while read -r m; do
		find "$m" -mindepth 1 -maxdepth 3 -type d 2>/dev/null
	done | sort
}

# our_ids: pod and container IDs this run's runtime handed out (every 64-hex
# token of critest's and the runtime's logs).
our_ids() {
	cat "$TMP/critest.log" "$TMP/runtime.log" 2>/dev/null | grep -oE '\b[0-9a-f]{64}\b' | sort -u
}

# remove_new_cgroups: rmdir the empty cgroups that this run's runtime made and
# left: new since the run started (cgroups.before), and named by one of our
# IDs, or critest's /test.slice (its cgroup parent when the runtime does not
# answer RuntimeConfig), cri-shim's default parent /cri-shim or containerd's
# /k8s.io, while no
# other critest.sh run is going on. Other
# cgroups, even new ones, belong to someone else on this machine. Deepest
# first; never kills (runc delete --force already removed our containers').
remove_new_cgroups() {
	local d ids others roots
	[[ -f $TMP/cgroups.before ]] || return 0
	ids=$(our_ids)
	roots=$(awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo)
	others=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^crit-' | grep -vx -- "${NS:-}" || true)
	cgroup_dirs | comm -13 "$TMP/cgroups.before" - | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- | while read -r d; do
		if grep -qx -- "${d##*/}" <<<"$ids"; then
			:
		elif [[ ($d == */test.slice || $d == */test.slice/*) && -z $others ]]; then
			:
		elif [[ $RUNTIME == cri-shim && ${d##*/} == cri-shim && -z $others ]] && grep -qx -- "${d%/*}" <<<"$roots"; then
			: # cri-shim's default pod cgroup parent, made by this run
		elif [[ $RUNTIME == containerd* && ${d##*/} == k8s.io && -z $others ]] && grep -qx -- "${d%/*}" <<<"$roots"; then
			: # containerd's cgroup namespace for pods without a parent, made by this run
		else
			continue
		fi
		if [[ -s $d/cgroup.procs ]]; then
			log "LEFTOVER: cgroup $d still has processes: $(tr '\n' ' ' <"$d/cgroup.procs")"
			continue
		fi
		rmdir "$d" 2>/dev/null || log "cannot remove cgroup $d"
	done
}

outer_cleanup() {
	local rc=$? pid leftovers=0
	trap - EXIT INT TERM
	set +e
	# A step that failed under set -e says nothing itself: say where.
	[[ $rc != 0 && -z ${INNER_STARTED:-} ]] && log "failed before critest started (exit $rc); see the output above"
	if [[ -n ${INNER_PID:-} ]] && kill -0 "$INNER_PID" 2>/dev/null; then
		log "stopping the run (pid $INNER_PID)"
		kill -TERM "$INNER_PID" 2>/dev/null
		for ((i = 0; i < 2400; i++)); do kill -0 "$INNER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$INNER_PID" 2>/dev/null
		wait "$INNER_PID" 2>/dev/null
	fi
	if [[ -n ${NS:-} && -e /run/netns/$NS ]]; then
		for pid in $(ip netns pids "$NS" 2>/dev/null); do
			log "leftover process $pid in netns $NS: SIGKILL"
			kill -KILL "$pid" 2>/dev/null
		done
	fi
	if [[ -s ${TMP:-/nonexistent}/mntns ]]; then
		for pid in $(pids_in_mntns "$(cat "$TMP/mntns")"); do
			log "leftover process $pid in the run's mount namespace: SIGKILL"
			kill -KILL "$pid" 2>/dev/null
		done
	fi
	if [[ -n ${TMP:-} && -d $TMP ]]; then
		delete_runc_leftovers "$TMP"
		remove_new_cgroups
		unmount_under "$TMP"
		if [[ -n ${ARTIFACTS:-} ]]; then
			mkdir -p "$ARTIFACTS"
			for f in "${ARTIFACT_FILES[@]}"; do
				[[ -f $TMP/$f ]] && cp "$TMP/$f" "$ARTIFACTS/"
			done
			[[ -d $TMP/benchmark ]] && cp -r "$TMP/benchmark" "$ARTIFACTS/"
		fi
	fi
	[[ -n ${NS:-} ]] && netns_del "$NS"
	[[ -n ${CREATED_VAR_LIB_CNI:-} ]] && rmdir /var/lib/cni 2>/dev/null

	# Check that nothing is left behind.
	if [[ -n ${NS:-} ]] && ip netns list | grep -qw -- "$NS"; then
		log "LEFTOVER: network namespace $NS"; leftovers=1
	fi
	if [[ -n ${TMP:-} ]] && grep -qF -- "$TMP" /proc/self/mountinfo; then
		log "LEFTOVER: mounts under $TMP:"; grep -F -- "$TMP" /proc/self/mountinfo >&2; leftovers=1
	fi
	if [[ -n ${TMP:-} && -d $TMP ]] && [[ -n $(runc_roots "$TMP") ]]; then
		for r in $(runc_roots "$TMP"); do
			[[ -n $(runc --root "$r" list -q 2>/dev/null) ]] && { log "LEFTOVER: runc containers in $r"; leftovers=1; }
		done
	fi
	# Our runtimes keep runc state under $TMP; a container of ours in runc's
	# default root (others may use it meanwhile) would be a leak all the same.
	if [[ -n ${TMP:-} ]]; then
		for id in $(runc list -q 2>/dev/null); do
			if grep -qx -- "$id" <<<"$(our_ids)"; then
				log "LEFTOVER: runc container $id in runc's default root"; leftovers=1
			fi
		done
	fi
	if [[ -n ${TMP:-} && -d $TMP ]]; then
		if [[ $KEEP == 1 || $leftovers == 1 ]]; then
			log "kept $TMP"
		else
			rm -rf --one-file-system "$TMP"
		fi
	fi
	if [[ $leftovers == 1 ]]; then
		log "cleanup: something was left behind"
		[[ $rc == 0 ]] && rc=1
	elif [[ -n ${NS:-} ]]; then
		log "cleanup: no netns, mounts, runc containers or temp dirs left"
	fi
	exit "$rc"
}

usage() {
	sed -n '2,/^set -euo/p' "$SCRIPT" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit "${1:-0}"
}

main() {
	RUNTIME=cri-shim CNI="" BENCHMARK=0 KNOWN_FAILURES="" KNOWN_SKIPS="" PAUSE_IMAGE="" VERBOSE=0 KEEP=0 ARTIFACTS="" EXEC_CMD=""
	local extra=()
	while [[ $# -gt 0 ]]; do
		case $1 in
		--runtime) RUNTIME=${2:?--runtime needs a value}; shift 2 ;;
		--runtime=*) RUNTIME=${1#*=}; shift ;;
		--cni) CNI=${2:?--cni needs a value}; shift 2 ;;
		--cni=*) CNI=${1#*=}; shift ;;
		--benchmark) BENCHMARK=1; shift ;;
		--exec) EXEC_CMD=${2:?--exec needs a command}; shift 2 ;;
		--known-failures) KNOWN_FAILURES=${2:?--known-failures needs a file}; shift 2 ;;
		--known-failures=*) KNOWN_FAILURES=${1#*=}; shift ;;
		--known-skips) KNOWN_SKIPS=${2:?--known-skips needs a file}; shift 2 ;;
		--known-skips=*) KNOWN_SKIPS=${1#*=}; shift ;;
		--pause-image) PAUSE_IMAGE=${2:?--pause-image needs an image}; shift 2 ;;
		--critest-version) use_cri_tools "${2:?--critest-version needs a cri-tools release, e.g. v1.37.0}"; shift 2 ;;
		--artifacts) ARTIFACTS=${2:?--artifacts needs a directory}; shift 2 ;;
		--verbose | -v) VERBOSE=1; shift ;;
		--keep) KEEP=1; shift ;;
		-h | --help) usage 0 ;;
		--) shift; extra=("$@"); break ;;
		*) log "unknown argument: $1"; usage 2 ;;
		esac
	done
	case $RUNTIME in containerd | containerd2 | cri-shim) ;; *) die "--runtime must be cri-shim, containerd or containerd2" ;; esac
	[[ -z $PAUSE_IMAGE || $RUNTIME == cri-shim ]] || die "--pause-image is for cri-shim (containerd runs $SANDBOX_IMAGE)"
	if [[ -z $CNI ]]; then
		CNI=cni-bridge
		[[ $RUNTIME == containerd* ]] && CNI=reference
	fi
	case $CNI in cni-bridge | reference) ;; *) die "--cni must be cni-bridge or reference" ;; esac
	[[ $(id -u) == 0 ]] || die "run as root (namespaces, mounts, runc)"
	[[ -z $KNOWN_FAILURES || -f $KNOWN_FAILURES ]] || die "no such file: $KNOWN_FAILURES"
	[[ -n $KNOWN_FAILURES ]] && KNOWN_FAILURES=$(realpath "$KNOWN_FAILURES")
	[[ -z $KNOWN_SKIPS || -f $KNOWN_SKIPS ]] || die "no such file: $KNOWN_SKIPS"
	[[ -n $KNOWN_SKIPS ]] && KNOWN_SKIPS=$(realpath "$KNOWN_SKIPS")
	local default_dir=$RUNTIME
	# A runtime with the other runtime's default network keeps its own artifacts.
	[[ $RUNTIME == cri-shim && $CNI == reference || $RUNTIME == containerd* && $CNI == cni-bridge ]] &&
		default_dir=$RUNTIME-$CNI
	ARTIFACTS=${ARTIFACTS:-$REPO/_output/critest/$default_dir}
	ARTIFACTS=$(realpath -m "$ARTIFACTS")
	mkdir -p "$ARTIFACTS"
	# Only what an earlier run put there: --artifacts may name any directory.
	(cd "$ARTIFACTS" && rm -rf -- "${ARTIFACT_FILES[@]}" summary.txt benchmark)

	if [[ $RUNTIME == containerd* ]]; then
		"$REPO/hack/install-deps.sh" --reference
		[[ $RUNTIME == containerd2 ]] && build_containerd2
	else
		"$REPO/hack/install-deps.sh"
	fi
	build_tools

	trap outer_cleanup EXIT
	trap 'log "interrupted"; exit 130' INT TERM
	TMP=$(mktemp -d /tmp/critest.XXXXXX)
	chmod 755 "$TMP"
	mkdir -p "$TMP/bin" "$TMP/cni-bin"
	local ours=()
	[[ $RUNTIME == cri-shim ]] && ours+=(cri-shim)
	[[ $CNI == cni-bridge ]] && ours+=(cni-bridge)
	log "building hack/testimages, the report tool and leakcheck${ours[*]:+; ${ours[*]}}"
	(
		cd "$REPO"
		go build -o "$TMP/bin/testimages" ./hack/testimages
		go build -o "$TMP/bin/critest-report" ./hack/critest/report
		go build -o "$TMP/bin/leakcheck" ./hack/leakcheck
		if [[ ${#ours[@]} -gt 0 ]]; then
			hack/build.sh "$TMP/built"
		fi
		if [[ $RUNTIME == cri-shim ]]; then
			# cri-shim finds cri-shim-monitor and cri-shim-pause next to itself.
			cp "$TMP/built/cri-shim" "$TMP/built/cri-shim-monitor" "$TMP/built/cri-shim-pause" "$TMP/bin/"
		fi
		if [[ $CNI == cni-bridge ]]; then
			cp "$TMP/built/cni-bridge" "$TMP/cni-bin/cni-bridge"
			# containerd runs the "loopback" plugin for every pod, from its
			# one bin_dir; a node has it from the standard plugins.
			if [[ $RUNTIME == containerd* ]]; then
				cp /usr/lib/cni/loopback "$TMP/cni-bin/"
			fi
		fi
	)
	# Build the images' helper programs now, outside the namespace.
	TESTIMAGES_CACHE=${TESTIMAGES_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/cri-shim-testimages}
	"$TMP/bin/testimages" list --cache-dir "$TESTIMAGES_CACHE" >"$TMP/images.txt"

	cgroup_dirs >"$TMP/cgroups.before"
	if [[ ! -e /var/lib/cni ]]; then
		mkdir -p /var/lib/cni
		CREATED_VAR_LIB_CNI=1
	fi

	NS=crit-$$
	netns_add "$NS"
	ip -n "$NS" link set lo up

	local sep=$'\x1f' joined=""
	if [[ ${#extra[@]} -gt 0 ]]; then
		joined=$(printf "%s$sep" "${extra[@]}")
		joined=${joined%"$sep"}
	fi
	local start=$SECONDS
	env TMP="$TMP" RUNTIME="$RUNTIME" CNI="$CNI" BENCHMARK="$BENCHMARK" PAUSE_IMAGE="$PAUSE_IMAGE" CONTAINERD2_DIR="$CONTAINERD2_DIR" VERBOSE="$VERBOSE" TOOLS_DIR="$TOOLS_DIR" CRI_TOOLS_VERSION="$CRI_TOOLS_VERSION" \
		TESTIMAGES_CACHE="$TESTIMAGES_CACHE" ARTIFACTS="$ARTIFACTS" CRITEST_EXTRA_ARGS="$joined" EXEC_CMD="$EXEC_CMD" \
		nsenter --net="/run/netns/$NS" -- \
		unshare --mount --ipc --uts --propagation private -- \
		bash "$SCRIPT" __inner &
	INNER_PID=$! INNER_STARTED=1
	local inner_rc=0
	wait "$INNER_PID" || inner_rc=$?
	INNER_PID=
	local elapsed=$((SECONDS - start))

	if [[ -n $EXEC_CMD ]]; then
		local rc=1
		[[ -s $TMP/exec.rc ]] && rc=$(cat "$TMP/exec.rc")
		cp "$TMP/exec.log" "$ARTIFACTS/exec.log" 2>/dev/null
		trap - EXIT
		( outer_cleanup ) || { [[ $rc == 0 ]] && rc=1; }
		cat "$ARTIFACTS/exec.log" 2>/dev/null
		exit "$rc"
	fi
	local report_args=()
	[[ -n $KNOWN_FAILURES ]] && report_args+=(--known-failures "$KNOWN_FAILURES")
	[[ -n $KNOWN_SKIPS ]] && report_args+=(--known-skips "$KNOWN_SKIPS")
	[[ $BENCHMARK == 1 ]] && report_args+=(--benchmark-dir "$TMP/benchmark")
	[[ -s $TMP/critest.rc ]] && report_args+=(--critest-exit "$(cat "$TMP/critest.rc")")
	local rc=0
	if [[ -s $TMP/report.json ]]; then
		"$TMP/bin/critest-report" "${report_args[@]}" "$TMP/report.json" >"$ARTIFACTS/summary.txt" || rc=$?
	else
		log "critest wrote no report (inner exit $inner_rc); see $ARTIFACTS/critest.log and runtime.log"
		[[ -f $TMP/critest.log ]] && tail -30 "$TMP/critest.log" >&2
		rc=1
	fi
	[[ $inner_rc != 0 && $rc == 0 ]] && rc=$inner_rc
	# Print the verdict after the cleanup's messages, as the last lines.
	trap - EXIT
	( outer_cleanup ) || { [[ $rc == 0 ]] && rc=1; }
	log "$RUNTIME: critest run took ${elapsed}s; artifacts in $ARTIFACTS"
	if [[ -f $ARTIFACTS/summary.txt ]]; then cat "$ARTIFACTS/summary.txt"; fi
	exit "$rc"
}

if [[ ${1:-} == __inner ]]; then
	inner
else
	main "$@"
fi
