#!/usr/bin/env bash
# critest.sh: critest's benchmarks (50 pods, 50 containers, 20 images,
# sequential; hack/critest/benchmark-params.yaml) against Debian's
# containerd 1.6 and cri-shim in one invocation, same machine, same harness,
# then p50/p90/p99 per operation for both and the p50 ratio
# cri-shim/containerd. A benchmark, not a test: its numbers go in notes.
#
#   sudo hack/bench/critest.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
out=_output/bench/critest
rm -rf "$out"
mkdir -p "$out"
hack/install-deps.sh --reference
for rt in containerd cri-shim; do
	echo "== critest --benchmark against $rt" >&2
	hack/critest.sh --runtime "$rt" --benchmark --artifacts "$out/$rt" >"$out/$rt.log" 2>&1 ||
		{ echo "critest --benchmark against $rt failed (see $out/$rt.log)" >&2; tail -20 "$out/$rt.log" >&2; exit 1; }
done
go run ./hack/bench/critestcmp "$out/containerd/benchmark" "$out/cri-shim/benchmark" | tee "$out/comparison.txt"
