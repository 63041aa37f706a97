#!/usr/bin/env bash
# build.sh: builds the Kubernetes binaries the kubelet e2e tests run
# (kubelet, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy, kubectl) from the Go module proxy, like upstream's release
# build, and caches them:
#
#   hack/kube/build.sh [--version vX.Y.Z]    prints the cache directory
#
# The binaries land in $KUBE_CACHE_DIR (default
# /var/cache/cri-shim-dev/kube-<version>) and are reused while all six are
# there; deleting the directory rebuilds. Nothing of this repository is
# touched: the build runs in a scratch module under /tmp that requires
# k8s.io/kubernetes and replaces every k8s.io/<staging> module (which
# kubernetes' go.mod points at ./staging/src) with its v0.<minor>.<patch>
# release, then
#   CGO_ENABLED=0 go build -trimpath -tags selinux,notest,grpcnotrace
# with the version ldflags of hack/lib/version.sh.
# Cold on 2 cores: ~15 min on an idle machine (39 min measured while other
# builds and tests ran), ~4 GB of Go build cache, ~2.7 GB peak RSS.
set -euo pipefail
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
while [[ $# -gt 0 ]]; do
	case $1 in
	--version) KUBE_VERSION=${2:?}; shift 2 ;;
	--version=*) KUBE_VERSION=${1#*=}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done
[[ $KUBE_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "--version must look like v1.37.2" >&2; exit 2; }
MINOR=${BASH_REMATCH[1]}
STAGING_VERSION=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
CACHE=${KUBE_CACHE_DIR:-/var/cache/cri-shim-dev/kube-$KUBE_VERSION}
BINS=(kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)

log() { printf '[kube/build.sh] %s\n' "$*" >&2; }

complete() {
	local b
	for b in "${BINS[@]}"; do [[ -x $CACHE/$b ]] || return 1; done
}

if complete; then
	log "using cached Kubernetes $KUBE_VERSION binaries in $CACHE"
	echo "$CACHE"
	exit 0
fi

mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9
if complete; then
	echo "$CACHE"
	exit 0
fi

work=$(mktemp -d /tmp/kube-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
log "building Kubernetes $KUBE_VERSION (${BINS[*]}) into $CACHE: first run only, ~15 min on 2 cores"
start=$SECONDS

gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[[ -f $gomod ]] || { log "go mod download k8s.io/kubernetes@$KUBE_VERSION gave no go.mod"; exit 1; }
# Every staging module kubernetes replaces with a directory of its own tree.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$gomod" | sort -u)
[[ ${#staging[@]} -gt 10 ]] || { log "found only ${#staging[@]} staging modules in $gomod"; exit 1; }
{
	echo "module kubebuild"
	echo
	echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
	echo
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	echo
	for m in "${staging[@]}"; do echo "replace $m => $m $STAGING_VERSION"; done
} >go.mod
# An importable package of the module so that `go mod tidy` keeps the
# requirement and fills go.sum for exactly what the commands need.
echo 'package kubebuild' >doc.go
pkgs=(k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
GOFLAGS=-mod=mod go list -deps "${pkgs[@]}" >/dev/null

commit=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)".*/\1/p' | head -1)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR"
	ldflags+=" -X $p.gitCommit=${commit:-unknown} -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done
mkdir -p out
# One go build for all: packages shared by the commands compile once.
nice -n 10 go build -mod=mod -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o out/ "${pkgs[@]}"
out/kubelet --version >&2
rm -rf "$CACHE.new"
mv out "$CACHE.new"
rm -rf "$CACHE"
mv "$CACHE.new" "$CACHE"
log "built in $((SECONDS - start))s"
echo "$CACHE"
