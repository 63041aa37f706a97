#!/usr/bin/env bash
# critest.sh: critest's benchmarks (50 pods, 50 containers, 20 images,
# sequential; hack/critest/benchmark-params.yaml) against cri-shim, Debian's
# containerd 1.6 and containerd 2.x, each on cni-bridge and on the reference
# plugins, one invocation, same machine, same harness; then p50/p90/p99 per
# operation and the p50 ratio for every labelled pair of hack/bench/lib.sh
# (runtime vs runtime on the same CNI; stack vs stack). A benchmark, not a
# test: its numbers go in notes.
#
#   sudo hack/bench/critest.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=hack/bench/lib.sh
source hack/bench/lib.sh
out=_output/bench/critest
rm -rf "$out"
mkdir -p "$out"
for setup in "${BENCH_SETUPS[@]}"; do
	label=${setup%%|*}
	read -ra flags <<<"${setup#*|}"
	bench_run "$label" "$out" -- "${flags[@]}" --benchmark
done
go build -o "$out/critestcmp" ./hack/bench/critestcmp
for pair in "${BENCH_PAIRS[@]}"; do
	IFS='|' read -r what ref cand <<<"$pair"
	echo "### $what ($ref -> $cand)"
	"$out/critestcmp" "$out/$ref/benchmark" "$out/$cand/benchmark"
	echo
done | tee "$out/comparison.txt"
