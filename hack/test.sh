#!/usr/bin/env bash
# test.sh: everything CI runs, in the order a failure is cheapest to find.
# Run as root on Debian 12: the integration tests and the conformance run
# create (and remove) their own network namespaces, bridges and runc
# containers; nothing touches the root network namespace.
#
#   hack/test.sh            verify + unit + root integration tests + critest ratchet
#                           (cri-shim; containerd 1.6 with cni-bridge as its plugin; cri-shim
#                           on a systemd + cgroup v2 + AppArmor node in a VM, hack/vm)
#   hack/test.sh -short     verify + tests that need no root
set -euo pipefail
cd "$(dirname "$0")/.."

short=""
[[ "${1:-}" == "-short" ]] && short="-short"

if [[ $(id -u) -eq 0 ]]; then
	hack/install-deps.sh
fi

echo "== verify"
hack/verify.sh

echo "== go test"
go test $short -count=1 -timeout 30m ./...

if [[ -n $short || $(id -u) -ne 0 ]]; then
	echo "== critest: skipped (needs root; not run with -short)"
	exit 0
fi
echo "== hack/run.sh --smoke (the README's first command, once through)"
hack/run.sh --smoke

echo "== critest (conformance ratchet: hack/critest-known-failures.txt)"
hack/critest.sh --runtime cri-shim --known-failures hack/critest-known-failures.txt

echo "== critest: containerd 1.6 with cni-bridge as its CNI plugin (hack/critest-known-failures-containerd.txt)"
hack/critest.sh --runtime containerd --cni cni-bridge --known-failures hack/critest-known-failures-containerd.txt

echo "== critest in a Debian 13 VM: systemd, cgroup v2, AppArmor (hack/critest-known-failures-vm.txt)"
hack/vm/run.sh hack/vm/guest/critest.sh --known-failures hack/critest-known-failures-vm.txt

echo "== cri-shim under systemd in the VM: driver, scopes, limits, restarts, OOM, cleanup"
hack/vm/run.sh hack/vm/guest/systemd-node.sh
