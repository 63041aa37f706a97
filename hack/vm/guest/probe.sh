#!/usr/bin/env bash
# probe.sh: the smoke test of hack/vm/run.sh, run inside the VM:
#
#   hack/vm/run.sh hack/vm/guest/probe.sh
#
# Checks that the guest is the node it claims to be (systemd as PID 1,
# cgroup v2 only, AppArmor enabled with apparmor_parser) and that cri-shim,
# installed by deploy/install.sh, runs under systemd and answers on its
# socket (crictl info prints its runtime config). Exit status 1 when a
# check failed.
set -euo pipefail

SOCK=unix:///run/cri-shim/cri-shim.sock
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
CHECK_NAME=probe
# shellcheck source=hack/vm/guest/lib-check.sh
source "$SRC/hack/vm/guest/lib-check.sh"

check "systemd is PID 1 ($(cat /proc/1/comm))" test "$(cat /proc/1/comm)" = systemd
check "/sys/fs/cgroup is cgroup2fs ($(stat -fc %T /sys/fs/cgroup)), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)" \
	test "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs
check "no cgroup v1 hierarchy mounted" bash -c '! grep -q " cgroup " /proc/self/mounts'
check "AppArmor enabled in the kernel" test "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y
check "apparmor_parser present ($(apparmor_parser --version 2>/dev/null | head -1))" test -x "$(command -v apparmor_parser)"
profiles=$(grep -c . /sys/kernel/security/apparmor/profiles 2>/dev/null || true)
check "AppArmor profiles loaded (${profiles:-0})" test "${profiles:-0}" -gt 0
check "runc ($(runc --version 2>/dev/null | head -1)) and crun ($(crun --version 2>/dev/null | head -1))" \
	bash -c 'command -v runc && command -v crun' >/dev/null
check "cri-shim.service is active" systemctl is-active --quiet cri-shim
check "crictl version" crictl --runtime-endpoint "$SOCK" --image-endpoint "$SOCK" --timeout 30s version
echo "[probe] crictl info (runtime status and config):"
check "crictl info" crictl --runtime-endpoint "$SOCK" --image-endpoint "$SOCK" --timeout 30s info
echo "[probe] cri-shim's cgroup and its processes:"
systemctl status --no-pager --lines 0 cri-shim || true

checks_done
