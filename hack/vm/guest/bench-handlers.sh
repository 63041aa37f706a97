#!/usr/bin/env bash
# bench-handlers.sh: critest's container and pod sandbox lifecycle
# benchmarks against the systemd-managed cri-shim in the VM of hack/vm,
# once per RuntimeClass handler, one after the other in one boot: runc
# (the default handler) and crun (Debian 13's 1.21, which cri-shim offers
# because it answers `crun features`). A benchmark, not a test: run it by
# hand and compare on the host with critestcmp.
#
#   hack/vm/run.sh hack/vm/guest/bench-handlers.sh [--install-runc]
#   go run ./hack/bench/critestcmp OUT/bench/runc OUT/bench/crun
#
# --install-runc first installs runc 1.5.3 (hack/install-runc.sh, shipped in
# /tools/runc) as /usr/local/sbin/runc, as guest/critest.sh does. The counts
# (hack/critest/benchmark-params-vm.yaml) are smaller than on the host:
# under qemu TCG a container costs ~1 s. "start a container from scratch"
# is skipped: it fails any pod start over 5 s, which TCG reaches.
set -euo pipefail

[[ -x /usr/local/sbin/cri-shim-vm-run ]] ||
	{ echo "bench-handlers.sh: run this inside the VM: hack/vm/run.sh hack/vm/guest/bench-handlers.sh" >&2; exit 2; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=${VM_OUT:-/out}
TOOLS=${VM_TOOLS:-/tools}

log() { printf '[bench-handlers.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=hack/vm/guest/lib-node.sh
source "$SRC/hack/vm/guest/lib-node.sh"
trap stop_registry EXIT
if [[ ${1:-} == --install-runc ]]; then install_tools_runc; fi
node_setup
command -v crun >/dev/null || die "no crun in the VM image"
log "runc: $(runc --version | head -1); crun: $(crun --version | head -1)"

rc=0
for h in runc crun; do
	mkdir -p "$OUT/bench/$h"
	work=$(mktemp -d /var/tmp/critest.XXXXXX)
	log "critest benchmarks with --runtime-handler=$h (log: $OUT/bench/$h.log)"
	(cd "$work" && TMPDIR=$work exec critest --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" \
		--runtime-handler="$h" --ginkgo.no-color --benchmark \
		--benchmarking-params-file "$SRC/hack/critest/benchmark-params-vm.yaml" \
		--benchmarking-output-dir "$OUT/bench/$h" \
		--ginkgo.focus 'benchmark about basic operations on Container|benchmark about lifecycle of PodSandbox' \
		--ginkgo.skip 'from scratch') \
		>"$OUT/bench/$h.log" 2>&1 || { rc=$?; log "critest ($h) exited $rc"; tail -20 "$OUT/bench/$h.log" >&2; }
	rm -rf "$work"
done
exit "$rc"
