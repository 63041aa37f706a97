#!/usr/bin/env bash
# pull.sh: PullImage of a 1 MiB and a 50 MiB image from a local registry
# (hack/bench/pull inside hack/critest.sh --exec) by Debian's containerd 1.6,
# containerd 2.x and cri-shim, one after the other in one invocation. The
# CNI plays no part in a pull; all run on cni-bridge. A benchmark: numbers
# for notes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=hack/bench/lib.sh
source hack/bench/lib.sh
out=_output/bench/pull
mkdir -p "$out"
go build -o "$out/pull" ./hack/bench/pull
for rt in containerd containerd2 cri-shim; do
	bench_run "$rt" "$out" -- --runtime "$rt" --cni cni-bridge --exec "$REPO/$out/pull"
	grep -v '^\[critest.sh\]' "$out/$rt/exec.log"
done
