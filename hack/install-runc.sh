#!/usr/bin/env bash
# install-runc.sh installs runc $RUNC_VERSION (default v1.5.3) as
# /usr/local/sbin/runc, ahead of Debian's /usr/sbin/runc on PATH (where
# containerd's docs put a runc release too). Debian 12's runc 1.1.5 cannot
# make idmapped mounts, so no pod could have a user namespace (KEP-127)
# with it; runc >= 1.2 can. It is built from the Go module proxy with
# seccomp support (cgo and Debian's libseccomp-dev, which install-deps.sh
# installs) and cached in /var/cache/cri-shim-dev/runc/<version>-<go
# version>, so a second run only copies (or does nothing: idempotent).
#
#   hack/install-runc.sh            build (first run ~30 s) and install
#   RUNC_VERSION=v1.4.4 hack/install-runc.sh
#
# cri-shim probes what a runtime can do (`runc features`), so a node with
# only Debian's runc keeps working, without user namespaces.
set -euo pipefail
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

version=${RUNC_VERSION:-v1.5.3}
dest=${RUNC_DEST:-/usr/local/sbin/runc}
log() { echo "[install-runc] $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null || die "no go toolchain on PATH or in /usr/local/go/bin"
cache=/var/cache/cri-shim-dev/runc/$version-$(go env GOVERSION)
if [[ ! -x $cache/runc ]]; then
	mkdir -p "$(dirname "$cache")"
	(
		flock 9
		[[ -x $cache/runc ]] && exit 0
		log "building runc $version from the Go module proxy into $cache (first run only, ~30 s)"
		work=$(mktemp -d /tmp/runc-build.XXXXXX)
		trap 'rm -rf "$work"' EXIT
		# The tags of runc's Makefile: seccomp (cgo, libseccomp), no docs.
		CGO_ENABLED=1 GOFLAGS=-mod=mod GOWORK=off GOBIN=$work/bin go install -trimpath \
			-tags "seccomp urfave_cli_no_docs" -ldflags "-X main.version=${version#v}" \
			"github.com/opencontainers/runc@$version"
		"$work/bin/runc" --version | grep -q libseccomp || die "the runc built has no seccomp support"
		rm -rf "$cache.new"
		mkdir -p "$cache.new"
		mv "$work/bin/runc" "$cache.new/runc"
		rm -rf "$cache"
		mv "$cache.new" "$cache"
	) 9>"$(dirname "$cache")/build.lock"
fi
if cmp -s "$cache/runc" "$dest"; then
	exit 0
fi
log "installing runc $version as $dest"
mkdir -p "$(dirname "$dest")"
install -m 0755 "$cache/runc" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
