#!/usr/bin/env bash
# run.sh: build everything and run a cri-shim node in a self-contained
# sandbox, until Ctrl-C.
#
# The sandbox is a dedicated network namespace plus a private mount, IPC and
# UTS namespace: cri-shim, its monitor, its containers, the cni-bridge pod
# network (bridge cni0, 10.88.0.0/16) and a local registry of test images
# (registry.k8s.io/e2e-test-images/busybox:1.29-2, nginx, ...; mirrored for
# registry.k8s.io, gcr.io, docker.io, ...) all live there. Nothing of the
# host's network is touched, and Ctrl-C removes everything. Since the
# sandbox has no route out, images come from that registry or from
# `cri-shim images import`.
#
#   sudo hack/run.sh            run until Ctrl-C
#   sudo hack/run.sh --smoke    start, run the example pod (hack/examples) with the
#                               printed crictl commands, check it, tear down
#
# Installing on a real node (root namespace, systemd) is described in
# deploy/README.md.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
log() { printf '[run.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=hack/lib/cri-tools.sh
source "$REPO/hack/lib/cri-tools.sh"
# shellcheck source=hack/lib/netns.sh
source "$REPO/hack/lib/netns.sh"

SMOKE=0
[[ ${1:-} == --smoke ]] && SMOKE=1
[[ $(id -u) == 0 ]] || die "run as root (it creates namespaces and mounts)"

NS=cri-shim-sandbox-$$
BASE=$(mktemp -d /tmp/cri-shim-sandbox.XXXXXX)
chmod 755 "$BASE"
BIN=$BASE/bin
SOCK=$BASE/cri-shim.sock
CRI_PID="" REG_PID="" LEFTOVERS=0 CGROUP_PARENT_EXISTED=0
compgen -G "/sys/fs/cgroup/*/cri-shim" >/dev/null || [[ -d /sys/fs/cgroup/cri-shim ]] && CGROUP_PARENT_EXISTED=1

cleanup() {
	set +e
	log "tearing down the sandbox"
	if [[ -S $SOCK ]]; then
		timeout 120 nsenter --net="/run/netns/$NS" "$TOOLS_DIR/crictl" -r "unix://$SOCK" -i "unix://$SOCK" rmp -fa >/dev/null 2>&1
	fi
	# cri-shim first: it would start a new monitor if the monitor went first.
	[[ -n $CRI_PID ]] && kill "$CRI_PID" 2>/dev/null && wait "$CRI_PID" 2>/dev/null
	[[ -f $BASE/state/monitor/monitor.pid ]] && kill "$(cat "$BASE/state/monitor/monitor.pid")" 2>/dev/null
	[[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	# Anything still running from the sandbox (a killed monitor's containers
	# are gone with rmp; this is the last resort): by PID, from /proc.
	local p pids=()
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/exe" 2>/dev/null) == "$BIN/"* ]] && pids+=("${p#/proc/}")
	done
	if [[ ${#pids[@]} -gt 0 ]]; then
		log "error: still running after teardown, killing: ${pids[*]}"
		kill -KILL "${pids[@]}" 2>/dev/null
		LEFTOVERS=1
	fi
	sleep 0.3
	# Every mount cri-shim made lives in its private mount namespace, which
	# goes with its last process; unmount what may remain visible here.
	grep -F " $BASE/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
	netns_del "$NS"
	rm -rf "$BASE"
	# The default cgroup parent of pods (/cri-shim), where this run made it
	# and it is empty now (rmdir never removes a cgroup still in use).
	if [[ $CGROUP_PARENT_EXISTED == 0 ]]; then
		find /sys/fs/cgroup/*/cri-shim /sys/fs/cgroup/cri-shim -depth -type d -exec rmdir {} + 2>/dev/null
	fi
	# The smoke test is a test of the teardown too.
	[[ $SMOKE == 1 && $LEFTOVERS == 1 ]] && exit 1
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "installing packages (apt) and building"
"$REPO/hack/install-deps.sh"
"$REPO/hack/build.sh" "$BIN"
(cd "$REPO" && go build -o "$BIN/testimages" ./hack/testimages)
build_tools
CRICTL=$TOOLS_DIR/crictl

mkdir -p "$BASE/net.d" "$BASE/certs.d" "$BASE/cni-bin" "$BASE/root" "$BASE/state"
cp "$BIN/cni-bridge" "$BASE/cni-bin/"
cat >"$BASE/net.d/10-pods.conflist" <<JSON
{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"cni0","subnet":"10.88.0.0/16",
  "isDefaultGateway":true,"ipMasq":true,"mtu":1500,"hairpinMode":true,"dataDir":"$BASE/cni-bridge",
  "capabilities":{"portMappings":true,"ipRanges":true}}]}
JSON
for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io; do
	mkdir -p "$BASE/certs.d/$host"
	printf 'server = "https://%s"\n\n[host."http://127.0.0.1:5000"]\n  capabilities = ["pull", "resolve"]\n' "$host" >"$BASE/certs.d/$host/hosts.toml"
done

netns_add "$NS"
ip netns exec "$NS" ip link set lo up
# nsenter, not `ip netns exec`: the latter remounts /sys and hides cgroups.
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

log "starting the test image registry on 127.0.0.1:5000 (in the sandbox)"
# Started with nsenter directly (which execs them), so that $! is the
# program itself: a background shell function would be a subshell, and
# killing it would leave the program running.
nsenter --net="/run/netns/$NS" "$BIN/testimages" serve --addr 127.0.0.1:5000 --ready-file "$BASE/registry.ready" >"$BASE/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 300); do [[ -f $BASE/registry.ready ]] && break; kill -0 "$REG_PID" 2>/dev/null || die "registry failed: $(tail -3 "$BASE/registry.log")"; sleep 0.2; done

log "starting cri-shim"
nsenter --net="/run/netns/$NS" unshare --mount --ipc --uts --propagation private \
	"$BIN/cri-shim" --listen "$SOCK" --root "$BASE/root" --state "$BASE/state" \
	--cni-conf-dir "$BASE/net.d" --cni-bin-dir "$BASE/cni-bin" --registry-config-dir "$BASE/certs.d" \
	>"$BASE/cri-shim.log" 2>&1 &
CRI_PID=$!
for _ in $(seq 100); do [[ -S $SOCK ]] && break; kill -0 "$CRI_PID" 2>/dev/null || die "cri-shim failed: $(tail -5 "$BASE/cri-shim.log")"; sleep 0.1; done
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$SOCK" "$SOCK" >"$BASE/crictl.yaml"
# A crictl that talks to this sandbox from any shell: the wrapper enters the
# sandbox's network namespace (port-forward and hostPorts live there) and
# points crictl at the socket.
mkdir -p "$BASE/path"
cat >"$BASE/path/crictl" <<WRAPPER
#!/bin/sh
# crictl for the hack/run.sh sandbox $NS (gone with it)
CRI_CONFIG_FILE=$BASE/crictl.yaml exec nsenter --net=/run/netns/$NS $CRICTL "\$@"
WRAPPER
chmod 755 "$BASE/path/crictl"
crictl() { "$BASE/path/crictl" "$@"; }
crictl version >/dev/null

# hack/examples, with the pod's logs kept in the sandbox directory.
sed "s|\"log_directory\": \"[^\"]*\"|\"log_directory\": \"$BASE/logs/default_demo_demo-uid\"|" \
	"$REPO/hack/examples/pod.json" >"$BASE/pod.json"
cp "$REPO/hack/examples/ctr.json" "$BASE/ctr.json"
grep -q "\"$BASE/logs/" "$BASE/pod.json" || die "hack/examples/pod.json has no log_directory to rewrite"

if [[ $SMOKE == 1 ]]; then
	log "smoke test: the commands run.sh prints, with hack/examples' pod.json and ctr.json"
	crictl pull registry.k8s.io/e2e-test-images/nginx:1.14-2 >/dev/null
	pod=$(crictl runp "$BASE/pod.json")
	ctr=$(crictl create "$pod" "$BASE/ctr.json" "$BASE/pod.json")
	crictl start "$ctr" >/dev/null
	[[ $(crictl exec "$ctr" hostname) == demo ]] || die "exec: wrong hostname"
	page=""
	for _ in $(seq 50); do
		page=$(in_ns busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null) && break
		sleep 0.1
	done
	[[ $page == *"Welcome to nginx"* ]] || die "hostPort 8080 of the example pod did not answer (got '$page')"
	crictl logs "$ctr" 2>&1 | grep -q '"GET / HTTP/1.1" 200' || die "crictl logs: no access log line"
	crictl rmp -f "$pod" >/dev/null
	log "smoke test passed"
	exit 0
fi

cat <<MSG

cri-shim is serving in the sandbox (network namespace $NS). Its crictl,
from any shell (it enters the sandbox itself):

  export PATH=$BASE/path:\$PATH      # or call $BASE/path/crictl

then, with the examples of hack/examples (copied to $BASE, logs kept there):

  crictl pull registry.k8s.io/e2e-test-images/nginx:1.14-2
  POD=\$(crictl runp $BASE/pod.json)
  CTR=\$(crictl create \$POD $BASE/ctr.json $BASE/pod.json)
  crictl start \$CTR
  crictl exec -it \$CTR sh
  nsenter --net=/run/netns/$NS busybox wget -qO- http://127.0.0.1:8080/   # the pod's hostPort
  crictl logs \$CTR; crictl ps; crictl pods; crictl stats
  crictl rmp -f \$POD

The sandbox has no route out: images come from its local registry
(127.0.0.1:5000, mirroring registry.k8s.io, gcr.io, docker.io, ...), which
serves:

$("$BIN/testimages" list 2>/dev/null | awk '{ printf "  %-67s ", $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print }')

or from 'cri-shim images import' (a docker save / OCI archive; see README).
Logs: $BASE/cri-shim.log. Ctrl-C stops it and removes everything.

MSG
wait "$CRI_PID"
