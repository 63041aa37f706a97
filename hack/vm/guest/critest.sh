#!/usr/bin/env bash
# critest.sh: the CRI conformance suite (critest, cri-tools v1.36.0) against
# the cri-shim that deploy/install.sh installed and systemd runs, inside the
# VM of hack/vm/run.sh:
#
#   hack/vm/run.sh hack/vm/guest/critest.sh [--known-failures FILE] [--known-skips FILE]
#                                           [--install-runc] [-- extra critest args]
#
# The node's own configuration, as a user would set it up (the VM is
# throwaway, so everything lives in the root namespaces; the VM has no
# network device, so the pod network reaches nothing outside it):
#  - the test registry (hack/testimages serve on 127.0.0.1:5000, images built
#    from the guest's Debian busybox; helper programs from /tools);
#  - hosts.toml mirrors of registry.k8s.io, k8s.gcr.io, gcr.io,
#    public.ecr.aws and docker.io to it in cri-shim's registry_config_dir
#    (/etc/cri-shim/certs.d), as hack/critest.sh writes them;
#  - the cni-bridge conflist of hack/critest/cri-shim-cni.conflist in
#    cni_conf_dir (/etc/cni/net.d), data in /var/lib/cni-bridge, and the
#    reference loopback plugin in /opt/cni/bin as on a kubeadm node;
#  - then `systemctl restart cri-shim` and critest with hack/critest.sh's
#    flags (--parallel=2 --ginkgo.v --ginkgo.skip 'public image with digest')
#    on unix:///run/cri-shim/cri-shim.sock (the config's listen).
# Results in /out: critest.log, report.json (ginkgo), summary.txt
# (hack/critest/report: failed specs and "critest: N passed, N failed, N
# skipped"), registry.log. --install-runc first puts /tools/runc/runc (runc
# 1.5.3, hack/install-runc.sh) in /usr/local/sbin, as deploy/README.md tells
# a user who wants user namespaces: Debian 13's runc 1.1.15 cannot idmap
# mounts, so its critest skips the 6 user-namespace specs. --known-failures FILE (relative to the checkout)
# and --known-skips FILE turn the verdict into hack/critest.sh's ratchet. Exit
# status non-zero when a spec failed (or, with the ratchet, on any change).
set -euo pipefail

[[ -x /usr/local/sbin/cri-shim-vm-run ]] ||
	{ echo "critest.sh: run this inside the VM: hack/vm/run.sh hack/vm/guest/critest.sh" >&2; exit 2; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=${VM_OUT:-/out}
TOOLS=${VM_TOOLS:-/tools}

log() { printf '[critest.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

KNOWN_FAILURES="" KNOWN_SKIPS="" INSTALL_RUNC="" EXTRA=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--known-failures) KNOWN_FAILURES=${2:?--known-failures needs a file}; shift 2 ;;
	--known-failures=*) KNOWN_FAILURES=${1#*=}; shift ;;
	--known-skips) KNOWN_SKIPS=${2:?--known-skips needs a file}; shift 2 ;;
	--known-skips=*) KNOWN_SKIPS=${1#*=}; shift ;;
	--install-runc) INSTALL_RUNC=1; shift ;;
	--) shift; EXTRA=("$@"); break ;;
	*) die "unknown argument: $1" ;;
	esac
done
abs_file() { # a ratchet file, relative to the checkout
	local f=$1
	[[ $f == /* ]] || f=$SRC/$f
	[[ -f $f ]] || die "no such file: $f"
	printf '%s\n' "$f"
}
[[ -n $KNOWN_FAILURES ]] && KNOWN_FAILURES=$(abs_file "$KNOWN_FAILURES")
[[ -n $KNOWN_SKIPS ]] && KNOWN_SKIPS=$(abs_file "$KNOWN_SKIPS")

# shellcheck source=hack/vm/guest/lib-node.sh
source "$SRC/hack/vm/guest/lib-node.sh"
trap stop_registry EXIT
if [[ -n $INSTALL_RUNC ]]; then install_tools_runc; fi
node_setup

args=(
	--runtime-endpoint "unix://$SOCK"
	--image-endpoint "unix://$SOCK"
	--ginkgo.json-report "$OUT/report.json"
	--ginkgo.no-color
	--parallel=2 --ginkgo.v --ginkgo.skip 'public image with digest'
)
work=$(mktemp -d /var/tmp/critest.XXXXXX)
log "running critest $("$TOOLS/bin/critest" --version 2>/dev/null | head -1) (log: $OUT/critest.log)"
start=$SECONDS
set +e
(cd "$work" && TMPDIR=$work exec critest "${args[@]}" "${EXTRA[@]}") 2>&1 | tee "$OUT/critest.log"
rc=${PIPESTATUS[0]} # critest's, not tee's
set -e
log "critest exited $rc after $((SECONDS - start))s"
stop_registry

report_args=(--critest-exit "$rc")
[[ -n $KNOWN_FAILURES ]] && report_args+=(--known-failures "$KNOWN_FAILURES")
[[ -n $KNOWN_SKIPS ]] && report_args+=(--known-skips "$KNOWN_SKIPS")
if [[ ! -s $OUT/report.json ]]; then
	log "critest wrote no report; see $OUT/critest.log"
	exit 1
fi
verdict=0
critest-report "${report_args[@]}" "$OUT/report.json" >"$OUT/summary.txt" || verdict=$?
cat "$OUT/summary.txt"
exit "$verdict"
