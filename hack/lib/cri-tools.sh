# cri-tools.sh: builds critest, crictl and ginkgo of cri-tools from the Go
# module proxy (critest is a test binary: `go test -c` of its cmd/critest) and
# caches them under /var/cache/cri-shim-dev, so a second run does not
# rebuild. Sourced by hack/critest.sh and hack/run.sh; needs log and die.

# (hack/critest.sh's inner half gets both from its outer half.)
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.36.0}
TOOLS_DIR=${CRITEST_TOOLS_DIR:-${TOOLS_DIR:-/var/cache/cri-shim-dev/tools/cri-tools-$CRI_TOOLS_VERSION}}

# use_cri_tools VERSION: build and use another cri-tools release (critest
# v1.37.0 adds image-volume and metrics specs); each has its own cache.
use_cri_tools() {
	CRI_TOOLS_VERSION=$1
	TOOLS_DIR=/var/cache/cri-shim-dev/tools/cri-tools-$CRI_TOOLS_VERSION
}

build_tools() {
	local want=("$TOOLS_DIR/critest" "$TOOLS_DIR/crictl" "$TOOLS_DIR/ginkgo") f ok=1
	for f in "${want[@]}"; do [[ -x $f ]] || ok=0; done
	if [[ $ok == 1 ]]; then
		log "using cached critest, crictl and ginkgo in $TOOLS_DIR"
		return
	fi
	mkdir -p "$(dirname "$TOOLS_DIR")"
	(
		flock 9
		ok=1
		for f in "${want[@]}"; do [[ -x $f ]] || ok=0; done
		[[ $ok == 1 ]] && exit 0
		log "building critest, crictl and ginkgo $CRI_TOOLS_VERSION into $TOOLS_DIR (first run only, ~3 min)"
		work=$(mktemp -d /tmp/critest-tools.XXXXXX)
		trap 'rm -rf "$work"' EXIT
		cd "$work"
		src=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[[ -d $src ]] || die "go mod download sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION gave no source directory"
		# The ginkgo CLI is built below from cri-tools' own module, so it is
		# the version its critest links (ginkgo warns about a mismatch).
		cp -r "$src" "$work/src"
		chmod -R u+w "$work/src"
		cd "$work/src"
		ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
		export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off
		mkdir -p "$work/out"
		go test -c -o "$work/out/critest" -ldflags "$ldflags" ./cmd/critest
		go build -o "$work/out/crictl" -ldflags "$ldflags" ./cmd/crictl
		go build -o "$work/out/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
		rm -rf "$TOOLS_DIR.new"
		mv "$work/out" "$TOOLS_DIR.new"
		rm -rf "$TOOLS_DIR"
		mv "$TOOLS_DIR.new" "$TOOLS_DIR"
	) 9>"$TOOLS_DIR.lock"
}

