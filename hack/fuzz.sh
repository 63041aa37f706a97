#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target of the tree for a few seconds each (CI
# runs it; `go test` alone only replays their seed corpora).
#
#   hack/fuzz.sh [SECONDS]     default 5 s per target
#
# Targets are found by name (func FuzzXxx in a _test.go file). A failure
# leaves its input under the package's testdata/fuzz/FuzzXxx/: commit it
# with the fix, so that `go test` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
n=0
while IFS=: read -r file line; do
	name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(.*/\1/' <<<"$line")
	pkg=./$(dirname "$file")
	echo "fuzz: $pkg $name (${secs}s)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" "$pkg" >/tmp/fuzz.$$.log 2>&1 ||
		{ cat /tmp/fuzz.$$.log >&2; rm -f /tmp/fuzz.$$.log; echo "fuzz: $name failed" >&2; exit 1; }
	n=$((n + 1))
done < <(git grep -E '^func Fuzz[A-Za-z0-9_]+\(' -- '*_test.go')
rm -f /tmp/fuzz.$$.log
[[ $n -gt 0 ]] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: $n targets, no failure"
