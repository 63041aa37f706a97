#!/usr/bin/env bash
# memory.sh: memory per running pod (PSS of daemon + monitor/shims + pause
# at 10, 50, 110 pods) and pod churn (1000 lifecycles, 10 in parallel: RSS
# of the daemon before/after, leaks) for Debian's containerd 1.6 and
# cri-shim, one after the other in one invocation, each inside
# hack/critest.sh's throwaway namespaces. A benchmark: numbers for notes.
#
#   sudo hack/bench/memory.sh [pss|churn|all]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
what=${1:-all}
out=_output/bench/memory
mkdir -p "$out"
hack/install-deps.sh --reference
go build -o "$out/memory" ./hack/bench/memory
modes=(pss churn)
[[ $what != all ]] && modes=("$what")
for mode in "${modes[@]}"; do
	for rt in containerd cri-shim; do
		echo "== $mode: $rt" >&2
		hack/critest.sh --runtime "$rt" --artifacts "$out/$rt-$mode" --exec "$REPO/$out/memory --mode $mode" \
			>"$out/$rt-$mode.log" 2>&1 || { tail -20 "$out/$rt-$mode.log" >&2; exit 1; }
		grep -v '^\[critest.sh\]' "$out/$rt-$mode/exec.log" | tee -a "$out/results.txt"
	done
done
