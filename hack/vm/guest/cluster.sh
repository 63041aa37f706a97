#!/usr/bin/env bash
# cluster.sh: RuntimeClass through a real API server, on the node users run
# (systemd as PID 1, cgroup v2, AppArmor), inside the VM:
#
#   hack/kube/build.sh && hack/vm/run.sh hack/vm/guest/cluster.sh
#
# kubelet resolves a pod's runtimeClassName only through the API server (a
# standalone kubelet ignores it), so this boots a one-node control plane in
# the VM: etcd (the host's Debian etcd-server, shipped in /tools/bin) and
# kube-apiserver (AlwaysAllow: the VM has no network device, so
# nothing but loopback reaches it; one static token for kubelet and
# kubectl; no controller-manager or scheduler: the
# pods name their node, and the ServiceAccount admission plugin is off since
# nothing creates service accounts), and kubelet v1.37 as a systemd unit
# with its default cgroup settings, registered as node vm-node. cri-shim
# runs with runc 1.5.3 as the default handler (installed as deploy/README.md
# says) and Debian 13's crun, which it offers by itself (crun answers
# `crun features`). Not part of hack/test.sh: it needs the Kubernetes build.
# Checks, each ok/FAIL (exit status 1 when one failed):
#  - the node registers and is Ready;
#  - RuntimeClasses crun and runc: each pod runs, its sandbox reports the
#    handler, pause and container live in that runtime's state only;
#  - a hostUsers: false pod with the crun RuntimeClass runs in a user
#    namespace (uid_map maps 0 to a non-zero host ID);
#  - a RuntimeClass naming a handler cri-shim lacks: the pod does not start
#    and kubelet's event carries cri-shim's InvalidArgument naming it;
#  - deleting the pods leaves both runtimes' state and the pod slices empty.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=${VM_OUT:-/out}
TOOLS=${VM_TOOLS:-/tools}
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
NODE=vm-node # install_kubelet's node name (lib-node.sh)
KUBECONFIG=/etc/kubernetes/admin.conf
export KUBECONFIG

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
CHECK_NAME=cluster
# shellcheck source=hack/vm/guest/lib-check.sh
source "$SRC/hack/vm/guest/lib-check.sh"

[[ -x /usr/local/sbin/cri-shim-vm-run ]] ||
	{ echo "cluster.sh: run this inside the VM: hack/vm/run.sh hack/vm/guest/cluster.sh" >&2; exit 2; }
for b in kubelet kubectl kube-apiserver etcd; do
	[[ -x $TOOLS/bin/$b ]] || die "no $b in $TOOLS/bin: run hack/kube/build.sh (and install etcd-server) on the host first"
done
[[ -s $TOOLS/pki/sa.key ]] || die "no service-account key in $TOOLS/pki (hack/vm/run.sh makes it)"

# shellcheck source=hack/vm/guest/lib-node.sh
source "$SRC/hack/vm/guest/lib-node.sh"
finish() {
	local u
	for u in kubelet kube-apiserver etcd; do
		journalctl -u "$u" --no-pager >"$OUT/$u.journal" 2>&1 || true
	done
	stop_registry
}
trap finish EXIT
install_tools_runc
node_setup
crictl pull "$IMAGE" >/dev/null
RUNC_ROOT=$(config_value state /run/cri-shim)/runc
CRUN_ROOT=$(config_value state /run/cri-shim)/runtimes/crun
info=$(crictl info)
check "cri-shim offers the crun handler" grep -q '"name": "crun"' <<<"$info"

log "starting etcd and kube-apiserver ($("$TOOLS/bin/kube-apiserver" --version))"
mkdir -p /etc/kubernetes
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN,admin,admin,system:masters" >/etc/kubernetes/tokens.csv
# etcd's data on tmpfs: the VM is thrown away, and TCG makes fsync slow.
systemd-run --unit=etcd --collect "$TOOLS/bin/etcd" --data-dir /run/etcd \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 >/dev/null
# --advertise-address: the VM's only interface is lo; no endpoint reconciler,
# since a loopback endpoint for the kubernetes service is refused.
systemd-run --unit=kube-apiserver --collect "$TOOLS/bin/kube-apiserver" \
	--etcd-servers=http://127.0.0.1:2379 --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
	--secure-port=6443 --cert-dir=/run/kube-apiserver --endpoint-reconciler-type=none \
	--service-account-issuer=https://kubernetes.default.svc \
	--service-account-key-file="$TOOLS/pki/sa.key" --service-account-signing-key-file="$TOOLS/pki/sa.key" \
	--service-cluster-ip-range=10.96.0.0/16 --authorization-mode=AlwaysAllow \
	--disable-admission-plugins=ServiceAccount --token-auth-file=/etc/kubernetes/tokens.csv >/dev/null
# kubelet and kubectl share one static token (kubectl with no credentials
# prompts for a password instead of going anonymous).
printf '%s\n' \
	'apiVersion: v1' \
	'kind: Config' \
	'clusters: [{name: vm, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]' \
	"users: [{name: admin, user: {token: $TOKEN}}]" \
	'contexts: [{name: vm, context: {cluster: vm, user: admin}}]' \
	'current-context: vm' >"$KUBECONFIG"
kctl() { "$TOOLS/bin/kubectl" --request-timeout=60s "$@"; }
# unit_up UNIT: dies with the unit's journal when it has stopped.
unit_up() {
	systemctl is-active -q "$1" && return 0
	journalctl -u "$1" --no-pager | tail -30 >&2
	die "$1 is not running"
}
# Under TCG kube-apiserver takes minutes to start; kubectl itself takes
# seconds, so the wait is by the clock, not by a count of tries.
start=$SECONDS
until kctl get --raw /readyz >/dev/null 2>&1; do
	unit_up etcd
	unit_up kube-apiserver
	((SECONDS - start < 900)) || { journalctl -u kube-apiserver --no-pager | tail -30 >&2; die "kube-apiserver not ready after 900s"; }
	log "waiting for kube-apiserver ($((SECONDS - start))s): $(journalctl -u kube-apiserver --no-pager -o cat | tail -1 | cut -c1-160)"
	sleep 10
done
log "kube-apiserver is ready after $((SECONDS - start))s"

install_kubelet 'one-node cluster' '' "--kubeconfig=$KUBECONFIG"
systemctl start kubelet

node_ready() {
	[[ $(kctl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
for ((i = 0; i < 300; i++)); do
	node_ready && break
	sleep 1
done
check "node $NODE registered and Ready (after ${i}s)" node_ready

# runtime_class NAME HANDLER; pod NAME CLASS [HOSTUSERS]: manifests.
runtime_class() {
	printf '%s\n' '---' 'apiVersion: node.k8s.io/v1' 'kind: RuntimeClass' "metadata: {name: $1}" "handler: $2"
}
pod() {
	printf '%s\n' '---' 'apiVersion: v1' 'kind: Pod' "metadata: {name: $1, namespace: default}" 'spec:' \
		"  nodeName: $NODE" "  runtimeClassName: $2" "  hostUsers: ${3:-true}" \
		'  automountServiceAccountToken: false' '  terminationGracePeriodSeconds: 1' \
		'  containers:' '  - name: main' "    image: $IMAGE" \
		'    command: ["sh", "-c", "echo started; exec sleep 3600"]'
}
{
	runtime_class crun crun
	runtime_class runc runc
	runtime_class missing no-such-handler
	pod under-crun crun
	pod under-runc runc
	pod userns-crun crun false
	pod missing-handler missing
} >"$OUT/cluster.yaml"
kctl apply -f "$OUT/cluster.yaml" >&2

phase() { kctl get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
for ((i = 0; i < 600; i++)); do
	[[ $(phase under-crun) == Running && $(phase under-runc) == Running && $(phase userns-crun) == Running ]] && break
	sleep 1
done
log "pods after ${i}s: under-crun $(phase under-crun), under-runc $(phase under-runc), userns-crun $(phase userns-crun)"
kctl get pods -o wide >&2 || true

# sandbox_of POD; ctr_of POD: the pod's sandbox and its container "main".
sandbox_of() { crictl pods -q --name "^$1\$" --namespace default --state ready 2>/dev/null | head -1; }
ctr_of() { crictl ps -q --name '^main$' --label "io.kubernetes.pod.name=$1" 2>/dev/null | head -1; }
# in_state ROOT RUNTIME ID: the runtime under ROOT knows container ID.
in_state() { "$2" --root "$1" state "$3" >/dev/null 2>&1; }

for c in crun runc; do
	pod=under-$c other=crun other_root=$CRUN_ROOT root=$RUNC_ROOT
	[[ $c == crun ]] && other=runc other_root=$RUNC_ROOT root=$CRUN_ROOT
	check "the $c RuntimeClass pod is Running ($(phase "$pod"))" test "$(phase "$pod")" = Running
	sb=$(sandbox_of "$pod") ctr=$(ctr_of "$pod")
	[[ -n $sb && -n $ctr ]] || { check "the $c pod has a sandbox and a container" false; continue; }
	check "its sandbox reports handler $c" \
		test "$(crictl inspectp -o go-template --template '{{.status.runtimeHandler}}' "$sb")" = "$c"
	check "its pause and container are in $c's state ($root)" bash -c \
		"$(declare -f in_state); in_state $root $c $sb && in_state $root $c $ctr"
	check "and not in $other's ($other_root)" bash -c \
		"$(declare -f in_state); ! in_state $other_root $other $sb && ! in_state $other_root $other $ctr"
	check "its log reached kubelet" bash -c "crictl logs $ctr 2>&1 | grep -q started"
done

check "the hostUsers: false crun pod is Running ($(phase userns-crun))" test "$(phase userns-crun)" = Running
if ctr=$(ctr_of userns-crun) && [[ -n $ctr ]]; then
	map=$(crictl exec "$ctr" cat /proc/self/uid_map 2>/dev/null | awk '{print $1, $2, $3; exit}')
	log "userns-crun uid_map: $map"
	check "its uid_map maps 0 to a non-zero host ID ($map)" bash -c "[[ '$map' =~ ^0\ [1-9][0-9]*\ [1-9] ]]"
	check "its container is crun's" bash -c "$(declare -f in_state); in_state $CRUN_ROOT crun $ctr"
fi

events=""
for ((i = 0; i < 120; i++)); do
	events=$(kctl get events --field-selector involvedObject.name=missing-handler \
		-o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' 2>/dev/null || true)
	grep -q no-such-handler <<<"$events" && break
	sleep 1
done
refused=$(grep -m1 '^FailedCreatePodSandBox:.*InvalidArgument.*no-such-handler' <<<"$events" || true)
log "missing-handler: ${refused:-no such event; events: $events}"
check "an unknown handler: the pod is not Running ($(phase missing-handler))" test "$(phase missing-handler)" != Running
check "and kubelet's FailedCreatePodSandBox event carries cri-shim's InvalidArgument naming it" test -n "$refused"

log "deleting the pods"
kctl delete -f "$OUT/cluster.yaml" --wait=false >&2 || true
for ((i = 0; i < 300; i++)); do
	[[ -z $(crictl pods -q) ]] && break
	sleep 1
done
check "every pod is gone (after ${i}s)" test -z "$(crictl pods -q)"
check "crun's and runc's state are empty" bash -c "[[ -z \$(ls -A $CRUN_ROOT 2>/dev/null) && -z \$(ls -A $RUNC_ROOT 2>/dev/null) ]]"
check "no pod slice or container scope is left" bash -c \
	"! find /sys/fs/cgroup/kubepods.slice \\( -name 'cri-shim-*.scope' -o -name 'kubepods*-pod*.slice' \\) 2>/dev/null | grep -q ."
systemctl stop kubelet kube-apiserver etcd 2>/dev/null || true

checks_done
