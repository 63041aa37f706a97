#!/usr/bin/env bash
# kubelet.sh: a standalone kubelet v1.37 on the node users run (systemd as
# PID 1, cgroup v2, AppArmor) with cri-shim, inside the VM:
#
#   hack/kube/build.sh && hack/vm/run.sh hack/vm/guest/kubelet.sh
#
# (run.sh shares kubelet when hack/kube/build.sh has it cached.) kubelet runs
# as a systemd unit with its DEFAULT cgroup settings: no failCgroupV1, no
# cgroupDriver (it takes the driver from cri-shim), no cgroupRoot. The
# config sets only what a standalone node needs: the runtime endpoint, the
# static pod directory, no API server authentication, and the read-only
# port on loopback for /stats/summary (the VM has no network device).
# Not part of hack/test.sh: it needs the Kubernetes build (~12 min cold).
# Checks, each ok/FAIL (exit status 1 when one failed):
#  - a Guaranteed and a Burstable static pod with limits reach Running;
#    each container is a scope in its kubepods-...-pod<uid>.slice, with
#    memory.max and cpu.max holding the limits;
#  - a container past its memory limit is reported OOMKilled, exit 137;
#  - /stats/summary: non-zero CPU and memory for the pods and containers;
#  - systemctl restart cri-shim keeps the containers running, logs flowing;
#  - deleting the manifests leaves no pod scope or slice, mount, netns pin
#    or pod IP behind.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=${VM_OUT:-/out}
TOOLS=${VM_TOOLS:-/tools}
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
MANIFESTS=/etc/kubernetes/manifests

log() { printf '[kubelet %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
CHECK_NAME=kubelet
# shellcheck source=hack/vm/guest/lib-check.sh
source "$SRC/hack/vm/guest/lib-check.sh"

[[ -x /usr/local/sbin/cri-shim-vm-run ]] ||
	{ echo "kubelet.sh: run this inside the VM: hack/vm/run.sh hack/vm/guest/kubelet.sh" >&2; exit 2; }
[[ -x $TOOLS/bin/kubelet ]] || die "no kubelet in $TOOLS/bin: run hack/kube/build.sh on the host first"

# shellcheck source=hack/vm/guest/lib-node.sh
source "$SRC/hack/vm/guest/lib-node.sh"
trap stop_registry EXIT
node_setup
crictl pull "$IMAGE" >/dev/null

mkdir -p "$MANIFESTS"
# Static pods, and the read-only port on loopback for /stats/summary.
install_kubelet 'standalone, static pods' "staticPodPath: $MANIFESTS
readOnlyPort: 10255"

# pod_manifest NAME RESOURCES COMMAND: a static pod with one container "main".
pod_manifest() {
	printf '%s\n' \
		'apiVersion: v1' \
		'kind: Pod' \
		'metadata:' \
		"  name: $1" \
		'  namespace: default' \
		'spec:' \
		'  restartPolicy: Never' \
		'  containers:' \
		'  - name: main' \
		"    image: $IMAGE" \
		"    command: [\"sh\", \"-c\", \"$3\"]" \
		"    resources: $2"
}
# shellcheck disable=SC2016 # expanded by the container's shell
counter='i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done'
pod_manifest guaranteed '{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 100m, memory: 64Mi}}' "$counter" \
	>"$MANIFESTS/guaranteed.yaml"
pod_manifest burstable '{requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: 200m, memory: 128Mi}}' "$counter" \
	>"$MANIFESTS/burstable.yaml"
pod_manifest oom '{requests: {memory: 16Mi}, limits: {memory: 16Mi}}' 'tail /dev/zero' >"$MANIFESTS/oom.yaml"

log "starting kubelet $("$TOOLS/bin/kubelet" --version)"
systemctl start kubelet

# ctr_of POD: the ID of the running container "main" of a static pod.
ctr_of() { crictl ps -q --name '^main$' --label "io.kubernetes.pod.name=$1-vm-node" 2>/dev/null | head -1; }
for ((i = 0; i < 600; i++)); do
	[[ -n $(ctr_of guaranteed) && -n $(ctr_of burstable) ]] && break
	sleep 1
done
check "the Guaranteed and the Burstable pod run (after ${i}s)" test -n "$(ctr_of guaranteed)" -a -n "$(ctr_of burstable)"
# What must be gone at the end exists now (the checks below are not vacuous).
check "the pods hold IPs ($(find /var/lib/cni-bridge -type f -path '*/ips/*' 2>/dev/null | wc -l)) and netns pins ($(find /run/cri-shim/netns -mindepth 1 2>/dev/null | wc -l))" \
	bash -c "find /var/lib/cni-bridge -type f -path '*/ips/*' | grep -q . && find /run/cri-shim/netns -mindepth 1 | grep -q ."

for qos in guaranteed burstable; do
	ctr=$(ctr_of $qos)
	[[ -n $ctr ]] || continue
	pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$ctr")
	cg=$(cut -d: -f3 "/proc/$pid/cgroup")
	case $qos in
	guaranteed)
		want='^/kubepods.slice/kubepods-pod[0-9a-f_]*.slice/cri-shim-[0-9a-f]*.scope$' mem=67108864 cpu="10000 100000"
		;;
	burstable)
		want='^/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod[0-9a-f_]*.slice/cri-shim-[0-9a-f]*.scope$'
		mem=134217728 cpu="20000 100000"
		;;
	esac
	check "$qos: the container is a scope in its pod slice ($cg)" grep -qE "$want" <<<"$cg"
	check "$qos: memory.max $(cat "/sys/fs/cgroup$cg/memory.max") = $mem" test "$(cat "/sys/fs/cgroup$cg/memory.max")" = "$mem"
	check "$qos: cpu.max $(cat "/sys/fs/cgroup$cg/cpu.max") = $cpu" test "$(cat "/sys/fs/cgroup$cg/cpu.max")" = "$cpu"
done

reason=""
for ((i = 0; i < 300; i++)); do
	id=$(crictl ps -a -q --name '^main$' --label "io.kubernetes.pod.name=oom-vm-node" --state exited 2>/dev/null | head -1)
	if [[ -n $id ]]; then
		reason=$(crictl inspect -o go-template --template '{{.status.reason}} {{.status.exitCode}}' "$id")
		break
	fi
	sleep 1
done
check "a container past its memory limit: ${reason:-never exited}" test "$reason" = "OOMKilled 137"

sleep 15 # kubelet's stats housekeeping
summary=$(busybox wget -q -O - http://127.0.0.1:10255/stats/summary | tr -d ' \n' || true)
printf '%s\n' "$summary" >"$OUT/stats-summary.json"
# shellcheck disable=SC2317 # called through check
nonzero() { grep -qE "\"$1\":[1-9][0-9]*" <<<"$summary"; }
check "/stats/summary has CPU usageCoreNanoSeconds > 0" nonzero usageCoreNanoSeconds
check "/stats/summary has memory workingSetBytes > 0" nonzero workingSetBytes
check "/stats/summary lists the pods and their containers" bash -c \
	"grep -q '\"name\":\"guaranteed-vm-node\"' <<<'$summary' && grep -q '\"name\":\"main\"' <<<'$summary'"

ctr=$(ctr_of guaranteed)
log_lines() {
	local n
	n=$(crictl logs "$ctr" 2>/dev/null | grep -c tick) || true
	echo "${n:-0}"
}
before=$(log_lines)
systemctl restart cri-shim
sleep 3
check "after systemctl restart cri-shim the container still runs" \
	test "$(crictl inspect -o go-template --template '{{.status.state}}' "$ctr")" = CONTAINER_RUNNING
check "after systemctl restart cri-shim its log still grows ($before -> $(log_lines))" test "$(log_lines)" -gt "$before"

log "deleting the manifests"
rm -f "$MANIFESTS"/guaranteed.yaml "$MANIFESTS"/burstable.yaml "$MANIFESTS"/oom.yaml
for ((i = 0; i < 300; i++)); do
	[[ -z $(crictl pods -q) ]] && break
	sleep 1
done
check "every pod is gone (after ${i}s)" test -z "$(crictl pods -q)"
check "no pod slice or container scope is left" bash -c \
	"! find /sys/fs/cgroup/kubepods.slice \\( -name 'cri-shim-*.scope' -o -name 'kubepods*-pod*.slice' \\) 2>/dev/null | grep -q ."
check "no netns pin is left" bash -c "! ls /run/cri-shim/netns/* 2>/dev/null | grep -q ."
check "no pod IP is reserved" bash -c "! find /var/lib/cni-bridge -type f -path '*/ips/*' 2>/dev/null | grep -q ."
check "no mount of a pod is left" bash -c \
	"! grep -qE '/run/cri-shim/(shm|netns)/|/var/lib/cri-shim/images/rootfs/' /proc/self/mountinfo"
systemctl stop kubelet
journalctl -u kubelet --no-pager >"$OUT/kubelet.journal" 2>&1 || true

checks_done
