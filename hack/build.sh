#!/usr/bin/env bash
# build.sh: builds every binary of the project into _output/bin (or $1):
# cri-shim, cri-shim-monitor, cni-bridge, cni-bridge-agent when present, and
# the C pause program (needs gcc; it is a few KiB and costs ~10 KiB per pod).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-_output/bin}
mkdir -p "$out"
version=$(git describe --always --dirty 2>/dev/null || echo dev)
for cmd in cmd/*/; do
	name=$(basename "$cmd")
	[[ -n $(ls "$cmd"*.go 2>/dev/null) ]] || continue
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.Version=$version" -o "$out/$name" "./$cmd"
done
gcc -Os -static -nostdlib -fno-stack-protector -fno-asynchronous-unwind-tables -fno-pie -no-pie \
	-Wl,--build-id=none -s -o "$out/cri-shim-pause" pkg/pause/program/pause.c
