# lib.sh: the runtime line-up of the benchmarks under hack/bench, sourced.
#
# Every comparison is labelled with what differs. "Runtime against runtime"
# runs both on the same CNI plugin (cni-bridge, and the reference bridge +
# host-local + portmap); "stack against stack" is each project's own
# default: containerd with the reference plugins, cri-shim with cni-bridge.
# The references: Debian's containerd 1.6 and containerd 2.x built from the
# Go module proxy (hack/lib/containerd2.sh), in the same run.

# bench_run LABEL OUTDIR -- hack/critest.sh ARGS...: one runtime setup,
# output in OUTDIR/LABEL{,.log}; the log is shown when it fails.
bench_run() {
	local label=$1 out=$2
	shift 3
	echo "== $label" >&2
	hack/critest.sh --artifacts "$out/$label" "$@" >"$out/$label.log" 2>&1 ||
		{ echo "$label failed (see $out/$label.log)" >&2; tail -20 "$out/$label.log" >&2; return 1; }
}

# The setups: label, then hack/critest.sh's runtime and CNI flags.
BENCH_SETUPS=(
	"containerd1.6+cni-bridge|--runtime containerd --cni cni-bridge"
	"containerd2+cni-bridge|--runtime containerd2 --cni cni-bridge"
	"cri-shim+cni-bridge|--runtime cri-shim --cni cni-bridge"
	"containerd1.6+reference|--runtime containerd --cni reference"
	"containerd2+reference|--runtime containerd2 --cni reference"
	"cri-shim+reference|--runtime cri-shim --cni reference"
)

# The comparisons, reference then candidate, with what they show.
BENCH_PAIRS=(
	"same CNI (cni-bridge), containerd 1.6 vs cri-shim|containerd1.6+cni-bridge|cri-shim+cni-bridge"
	"same CNI (cni-bridge), containerd 2 vs cri-shim|containerd2+cni-bridge|cri-shim+cni-bridge"
	"same CNI (bridge + host-local + portmap), containerd 1.6 vs cri-shim|containerd1.6+reference|cri-shim+reference"
	"same CNI (bridge + host-local + portmap), containerd 2 vs cri-shim|containerd2+reference|cri-shim+reference"
	"stack vs stack: containerd 1.6 + reference plugins vs cri-shim + cni-bridge|containerd1.6+reference|cri-shim+cni-bridge"
	"stack vs stack: containerd 2 + reference plugins vs cri-shim + cni-bridge|containerd2+reference|cri-shim+cni-bridge"
)
