#!/usr/bin/env bash
# memory.sh: memory per running pod (PSS of daemon + monitor/shims + pause
# at 10, 50, 110 pods) and pod churn (1000 lifecycles, 10 in parallel: RSS
# of the daemon before/after, leaks) for Debian's containerd 1.6,
# containerd 2.x and cri-shim, one after the other in one invocation, each
# inside hack/critest.sh's throwaway namespaces, all on cni-bridge.
#
# The same pause for everyone: containerd runs registry.k8s.io/pause:3.10
# from the test registry, and so does the row "cri-shim (same pause)"
# (--pause-image); "cri-shim (built-in pause)" is its default, a static C
# pause, shown apart so the pause's share is visible. A benchmark: numbers
# for notes.
#
# rpc: the node at kubelet's default maximum (110 pods x 3 containers), p50
# and p99 of the list/status/stats/metrics RPCs kubelet calls there, and of
# RunPodSandbox in 5 bursts of 10 at once on that full node (not in "all":
# it takes ~12 minutes for the three runtimes).
#
#   sudo hack/bench/memory.sh [pss|churn|rpc|all] [SETUP]
#
# SETUP (a label prefix: containerd1.6, containerd2, cri-shim) runs only
# those setups, e.g. to re-measure cri-shim alone after a change (ratios
# still want all three in one run).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=hack/bench/lib.sh
source hack/bench/lib.sh
what=${1:-all}
only=${2:-}
out=_output/bench/memory
mkdir -p "$out"
go build -o "$out/memory" ./hack/bench/memory
modes=(pss churn)
[[ $what != all ]] && modes=("$what")
setups=(
	"containerd1.6|--runtime containerd"
	"containerd2|--runtime containerd2"
	"cri-shim-same-pause|--runtime cri-shim --pause-image registry.k8s.io/pause:3.10"
	"cri-shim-builtin-pause|--runtime cri-shim"
)
for mode in "${modes[@]}"; do
	for setup in "${setups[@]}"; do
		label=${setup%%|*}
		[[ -n $only && $label != "$only"* ]] && continue
		# The pause does not change RPC latency: one cri-shim row is enough.
		[[ $mode == rpc && $label == cri-shim-builtin-pause ]] && continue
		read -ra flags <<<"${setup#*|}"
		bench_run "$label-$mode" "$out" -- "${flags[@]}" --cni cni-bridge \
			--exec "BENCH_LABEL=$label $REPO/$out/memory --mode $mode"
		grep -v '^\[critest.sh\]' "$out/$label-$mode/exec.log" | tee -a "$out/results.txt"
	done
done
