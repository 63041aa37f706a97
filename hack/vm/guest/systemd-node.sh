#!/usr/bin/env bash
# systemd-node.sh: cri-shim on the node users run (systemd as PID 1, cgroup
# v2, AppArmor), driven with crictl as an operator would, inside the VM:
#
#   hack/vm/run.sh hack/vm/guest/systemd-node.sh
#
# Checks, each printed as ok/FAIL (exit status 1 when one failed):
#  - cri-shim chose the systemd cgroup driver itself and says so (crictl
#    info), AppArmor is on and its default profile is loaded;
#  - a pod with the kubelet-style parent kubepods-burstable-pod<uid>.slice:
#    its pause and its container are scopes cri-shim-<id>.scope inside that
#    slice (/proc/PID/cgroup), memory.max and cpu.max hold the limits, the
#    container runs under cri-shim-default;
#  - stats: non-zero CPU and memory, with PSI; CRI metrics (crictl metricsp)
#    with the PSI families and the limits read back;
#  - a forensic checkpoint (crictl checkpoint, Debian's CRIU): the archive
#    has checkpointctl's layout, mode 600, checkpointctl shows it, the
#    container runs on;
#  - the crun RuntimeClass handler (offered since crun answers `crun
#    features`): pod and container in crun's state, exec, cleanup;
#  - systemctl restart and systemctl stop/start of cri-shim keep the container
#    running and its log flowing; the monitor has a scope of its own;
#  - a container past its memory limit: OOMKilled, exit 137;
#  - removing the pod leaves no scope, no netns pin, no mount.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=${VM_OUT:-/out}
TOOLS=${VM_TOOLS:-/tools}
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2

log() { printf '[node %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
CHECK_NAME=node
# shellcheck source=hack/vm/guest/lib-check.sh
source "$SRC/hack/vm/guest/lib-check.sh"

# shellcheck source=hack/vm/guest/lib-node.sh
source "$SRC/hack/vm/guest/lib-node.sh"
trap stop_registry EXIT
node_setup

work=$(mktemp -d /var/tmp/node.XXXXXX)
uid=0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f
slice=kubepods-burstable-pod${uid//-/_}.slice
slice_path=/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/$slice

info=$(crictl info)
check "cri-shim picked the systemd cgroup driver" grep -q '"cgroupDriver": "systemd"' <<<"$info"
check "cri-shim reports AppArmor on" grep -q '"apparmor": "true"' <<<"$info"
check "the cri-shim-default AppArmor profile is loaded" grep -q '^cri-shim-default (enforce)' /sys/kernel/security/apparmor/profiles

cat >"$work/pod.json" <<JSON
{"metadata": {"name": "node-test", "namespace": "default", "uid": "$uid"},
 "log_directory": "$work/logs",
 "linux": {"cgroup_parent": "/kubepods.slice/kubepods-burstable.slice/$slice"}}
JSON
cat >"$work/ctr.json" <<JSON
{"metadata": {"name": "counter"}, "image": {"image": "$IMAGE"},
 "command": ["sh", "-c", "i=0; while true; do i=\$((i+1)); echo line \$i; sleep 0.2; done"],
 "log_path": "counter.log",
 "linux": {"resources": {"memory_limit_in_bytes": 67108864, "cpu_quota": 50000, "cpu_period": 100000}}}
JSON
cat >"$work/oom.json" <<JSON
{"metadata": {"name": "hog"}, "image": {"image": "$IMAGE"}, "command": ["tail", "/dev/zero"],
 "log_path": "hog.log", "linux": {"resources": {"memory_limit_in_bytes": 16777216}}}
JSON
crictl pull "$IMAGE" >/dev/null
pod=$(crictl runp "$work/pod.json")
ctr=$(crictl create "$pod" "$work/ctr.json" "$work/pod.json")
crictl start "$ctr" >/dev/null
pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$ctr")
pause_pid=$(head -1 "$slice_path/cri-shim-$pod.scope/cgroup.procs" 2>/dev/null || true)
log "pod $pod, container $ctr (pid $pid)"

cg=$(cut -d: -f3 "/proc/$pid/cgroup")
check "the container is a scope in its pod's slice ($cg)" test "$cg" = "/kubepods.slice/kubepods-burstable.slice/$slice/cri-shim-$ctr.scope"
check "the pause is a scope in the pod's slice" test -d "$slice_path/cri-shim-$pod.scope"
check "memory.max = 64 MiB ($(cat "$slice_path/cri-shim-$ctr.scope/memory.max"))" \
	test "$(cat "$slice_path/cri-shim-$ctr.scope/memory.max")" = 67108864
check "cpu.max = 50000 100000 ($(cat "$slice_path/cri-shim-$ctr.scope/cpu.max"))" \
	test "$(cat "$slice_path/cri-shim-$ctr.scope/cpu.max")" = "50000 100000"
check "the container runs under cri-shim-default ($(cat "/proc/$pid/attr/current"))" \
	grep -q '^cri-shim-default (enforce)' "/proc/$pid/attr/current"
check "the container has a private cgroup namespace" test "$(readlink "/proc/$pid/ns/cgroup")" != "$(readlink /proc/self/ns/cgroup)"

sleep 2
# The JSON on one line (no jq in the guest): "key":{"value":"N"}.
stats=$(crictl stats -o json "$ctr" | tr -d ' \n')
value() { grep -o "\"$1\":{\"value\":\"[0-9]*\"" <<<"$2" | grep -o '[0-9]\+' | tail -1 || true; }
cpu=$(value usageCoreNanoSeconds "$stats")
mem=$(value workingSetBytes "$stats")
check "container stats: CPU ${cpu:-none} ns, working set ${mem:-none} bytes" test "${cpu:-0}" -gt 0 -a "${mem:-0}" -gt 0
check "container stats carry PSI" grep -q '"psi"' <<<"$stats"
podstats=$(crictl statsp -o json "$pod" 2>/dev/null | tr -d ' \n' || true)
check "pod stats have CPU and memory" grep -q '"usageCoreNanoSeconds"' <<<"$podstats"

# CRI metrics (what kubelet serves as /metrics/cadvisor): on cgroup v2 with
# PSI the pressure families have values too; the limits read back.
metrics=$(crictl metricsp -o json 2>/dev/null | tr -d ' \n' || true)
for name in container_pressure_cpu_waiting_seconds_total container_pressure_memory_stalled_seconds_total \
	container_spec_cpu_quota container_memory_working_set_bytes container_network_receive_bytes_total \
	container_threads container_fs_usage_bytes; do
	check "pod metrics have $name" grep -q "\"name\":\"$name\"" <<<"$metrics"
done
check "container_spec_memory_limit_bytes is 64 MiB" grep -qE \
	'"name":"container_spec_memory_limit_bytes"[^}]*"label_?[vV]alues":\["node-test","default","counter"[^]]*\],"value":\{"value":"?67108864"?\}' <<<"$metrics"

# A forensic checkpoint (KEP-2008) with the node's CRIU: the archive has
# the layout checkpointctl reads, it is private, the container runs on.
ckpt=$work/checkpoint.tar
check "crictl checkpoint of the running container" crictl checkpoint --export="$ckpt" "$ctr"
listing=$(tar tf "$ckpt" 2>/dev/null || true)
for f in checkpoint/inventory.img config.dump spec.dump rootfs-diff.tar; do
	check "the checkpoint archive has $f" grep -qx "$f" <<<"$listing"
done
check "the checkpoint archive is mode 600 ($(stat -c %a "$ckpt" 2>/dev/null))" test "$(stat -c %a "$ckpt" 2>/dev/null)" = 600
check "checkpointctl reads the archive" checkpointctl show "$ckpt"
check "after the checkpoint the container still runs" kill -0 "$pid"
rm -f "$ckpt"

# The RuntimeClass handler crun (trixie's crun answers `crun features`, so
# cri-shim offers it by itself): its pod and container live in crun's
# state, exec works, removal empties that state.
check "cri-shim offers the crun handler" grep -q '"name": "crun"' <<<"$info"
cat >"$work/pod-crun.json" <<JSON
{"metadata": {"name": "crun-test", "namespace": "default", "uid": "crun-$uid"}, "log_directory": "$work/logs-crun"}
JSON
cat >"$work/ctr-crun.json" <<JSON
{"metadata": {"name": "sleeper"}, "image": {"image": "$IMAGE"}, "command": ["sleep", "3600"], "log_path": "sleeper.log"}
JSON
crun_root=/run/cri-shim/runtimes/crun
if cpod=$(crictl runp --runtime crun "$work/pod-crun.json") &&
	cctr=$(crictl create "$cpod" "$work/ctr-crun.json" "$work/pod-crun.json") && crictl start "$cctr" >/dev/null; then
	check "the crun pod's container runs in crun's state" bash -c "crun --root $crun_root state $cctr | grep -q '\"running\"'"
	check "its pause too" bash -c "crun --root $crun_root state $cpod >/dev/null"
	check "runc knows neither" bash -c "! runc --root /run/cri-shim/runc state $cctr >/dev/null 2>&1"
	check "exec in the crun container" test "$(crictl exec "$cctr" echo via-crun)" = via-crun
	crictl stopp "$cpod" >/dev/null && crictl rmp "$cpod" >/dev/null
	check "removing the crun pod empties crun's state" bash -c "[[ -z \$(ls -A $crun_root) ]]"
else
	check "run a pod and a container with the crun handler" false
fi

monitor=$(pgrep -f '^/usr/local/bin/cri-shim-monitor' | head -1 || true)
check "the monitor (pid ${monitor:-none}) has a scope of its own ($(cut -d: -f3 "/proc/${monitor:-0}/cgroup" 2>/dev/null))" \
	grep -q '/system.slice/cri-shim-monitor-[0-9]*\.scope$' "/proc/${monitor:-0}/cgroup"

lines() {
	local n
	n=$(grep -c 'line ' "$work/logs/counter.log" 2>/dev/null) || true
	echo "${n:-0}"
}
for action in restart stop; do
	before=$(lines)
	systemctl "$action" cri-shim
	sleep 2
	check "after systemctl $action cri-shim the container still runs" kill -0 "$pid"
	check "after systemctl $action cri-shim its log still grows ($before -> $(lines) lines)" test "$(lines)" -gt "$before"
	[[ $action == stop ]] && systemctl start cri-shim
	wait_for 60 cri-shim crictl --timeout 5s version
done
check "crictl still sees the container running" test "$(crictl inspect -o go-template --template '{{.status.state}}' "$ctr")" = CONTAINER_RUNNING

hog=$(crictl create "$pod" "$work/oom.json" "$work/pod.json")
crictl start "$hog" >/dev/null
for ((i = 0; i < 60; i++)); do
	[[ $(crictl inspect -o go-template --template '{{.status.state}}' "$hog") == CONTAINER_EXITED ]] && break
	sleep 1
done
reason=$(crictl inspect -o go-template --template '{{.status.reason}} {{.status.exitCode}}' "$hog")
check "a container past its memory limit: $reason" test "$reason" = "OOMKilled 137"

crictl stopp "$pod" >/dev/null
crictl rmp "$pod" >/dev/null
sleep 1
check "no scope of the pod is left" bash -c "! ls -d $slice_path/cri-shim-*.scope 2>/dev/null"
check "no netns pin of the pod is left" test ! -e "/run/cri-shim/netns/$pod"
check "no mount of the pod is left" bash -c "! grep -q '$pod' /proc/self/mountinfo"
check "the pause process (pid ${pause_pid:-unknown}) is gone" bash -c "[[ -n '$pause_pid' ]] && ! kill -0 '$pause_pid' 2>/dev/null"
rm -rf "$work"

checks_done
