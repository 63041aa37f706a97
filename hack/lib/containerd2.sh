# containerd2.sh: builds containerd 2.x (the daemon and its runc shim) from
# the Go module proxy and caches them under /var/cache/cri-shim-dev, for
# the benchmarks that compare cri-shim with it (hack/critest.sh --runtime
# containerd2). Sourced; needs log and die.

CONTAINERD2_VERSION=v2.4.2
CONTAINERD2_DIR=${CONTAINERD2_DIR:-/var/cache/cri-shim-dev/containerd-$CONTAINERD2_VERSION}

build_containerd2() {
	local want=("$CONTAINERD2_DIR/containerd" "$CONTAINERD2_DIR/containerd-shim-runc-v2") f ok=1
	for f in "${want[@]}"; do [[ -x $f ]] || ok=0; done
	if [[ $ok == 1 ]]; then
		log "using cached containerd $CONTAINERD2_VERSION in $CONTAINERD2_DIR"
		return
	fi
	mkdir -p "$(dirname "$CONTAINERD2_DIR")"
	(
		flock 9
		ok=1
		for f in "${want[@]}"; do [[ -x $f ]] || ok=0; done
		[[ $ok == 1 ]] && exit 0
		log "building containerd $CONTAINERD2_VERSION into $CONTAINERD2_DIR (first run only, several minutes)"
		work=$(mktemp -d /tmp/containerd2.XXXXXX)
		trap 'rm -rf "$work"' EXIT
		cd "$work"
		src=$(go mod download -json "github.com/containerd/containerd/v2@$CONTAINERD2_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[[ -d $src ]] || die "go mod download github.com/containerd/containerd/v2@$CONTAINERD2_VERSION gave no source directory"
		cp -r "$src" "$work/src"
		chmod -R u+w "$work/src"
		cd "$work/src"
		# As containerd's release builds: static shim, no btrfs/zfs/devmapper
		# snapshotters (cgo headers this machine lacks; not used here).
		pkg=github.com/containerd/containerd/v2
		ldflags="-X $pkg/version.Version=$CONTAINERD2_VERSION -X $pkg/version.Package=$pkg"
		export GOFLAGS=-buildvcs=false GOWORK=off
		mkdir -p "$work/out"
		CGO_ENABLED=1 go build -o "$work/out/containerd" -tags "no_btrfs no_zfs no_devmapper" -ldflags "$ldflags" ./cmd/containerd
		CGO_ENABLED=0 go build -o "$work/out/containerd-shim-runc-v2" -ldflags "$ldflags" ./cmd/containerd-shim-runc-v2
		rm -rf "$CONTAINERD2_DIR.new"
		mv "$work/out" "$CONTAINERD2_DIR.new"
		rm -rf "$CONTAINERD2_DIR"
		mv "$CONTAINERD2_DIR.new" "$CONTAINERD2_DIR"
	) 9>"$CONTAINERD2_DIR.lock"
}
