#!/usr/bin/env bash
# pull.sh: PullImage of a 1 MiB and a 50 MiB image from a local registry,
# Debian's containerd 1.6 then cri-shim, in one invocation (hack/bench/pull
# inside hack/critest.sh --exec). A benchmark: numbers for notes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
out=_output/bench/pull
mkdir -p "$out"
hack/install-deps.sh --reference
go build -o "$out/pull" ./hack/bench/pull
for rt in containerd cri-shim; do
	echo "== $rt" >&2
	hack/critest.sh --runtime "$rt" --artifacts "$out/$rt" --exec "$REPO/$out/pull" >"$out/$rt.log" 2>&1 ||
		{ tail -20 "$out/$rt.log" >&2; exit 1; }
	grep -v '^\[critest.sh\]' "$out/$rt/exec.log"
done
