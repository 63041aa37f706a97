#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target of the tree for a number of inputs each
# (CI runs it; `go test` alone only replays their seed corpora).
#
#   hack/fuzz.sh [N]     default 2000 inputs per target
#
# A count, not a duration: with a duration (-fuzztime 5s) Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure at the
# deadline when a worker is slow to stop (golang/go#75804, fixed in Go 1.27);
# a count has no deadline. Targets are found by name (func FuzzXxx in a
# _test.go file). A failure leaves its input under the package's
# testdata/fuzz/FuzzXxx/: commit it with the fix, so that `go test` replays
# it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
n=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS=: read -r file line; do
	name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(.*/\1/' <<<"$line")
	pkg=./$(dirname "$file")
	echo "fuzz: $pkg $name (${count} inputs)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "${count}x" "$pkg" >"$log" 2>&1 ||
		{ cat "$log" >&2; echo "fuzz: $name failed" >&2; exit 1; }
	n=$((n + 1))
done < <(git grep -E '^func Fuzz[A-Za-z0-9_]+\(' -- '*_test.go')
[[ $n -gt 0 ]] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: $n targets, no failure"
