#!/usr/bin/env bash
# install-test.sh: checks deploy/install.sh on a real systemd node, inside
# the VM of hack/vm/run.sh (after in-guest.sh ran it once):
#
#   hack/vm/run.sh hack/vm/guest/install-test.sh
#
# A second run changes and restarts nothing; a changed binary is replaced and
# cri-shim restarted (a new main PID); an edited config.toml is kept;
# --prefix rewrites the unit's ExecStart; --no-start starts nothing.
set -euo pipefail

[[ -x /usr/local/sbin/cri-shim-vm-run ]] ||
	{ echo "install-test.sh: run this inside the VM: hack/vm/run.sh $0" >&2; exit 2; }
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
INSTALL=$SRC/deploy/install.sh
failed=0
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds.
check() {
	local what=$1
	shift
	if "$@"; then
		printf '[install-test] ok    %s\n' "$what"
	else
		printf '[install-test] FAIL  %s\n' "$what"
		failed=1
	fi
}
main_pid() { systemctl show -p MainPID --value cri-shim; }

# run_install ARGS...: install.sh's stderr in $LOG; fails the test on a non-zero exit.
run_install() {
	LOG=$(mktemp)
	echo "[install-test] deploy/install.sh $*"
	check "install.sh $* exits 0" "$INSTALL" "$@" 2>"$LOG"
	sed 's/^/    /' "$LOG"
}

pid=$(main_pid)
run_install
check "a second run changes nothing" bash -c "! grep -q 'installed\|restarting' $LOG"
check "and restarts nothing (main PID $pid)" test "$(main_pid)" = "$pid"

echo "# edited by install-test.sh" >>/etc/cri-shim/config.toml
printf '\0' >>/usr/local/bin/cri-shim-pause # any change of the bytes
run_install
check "a changed binary is replaced" grep -q 'installed /usr/local/bin/cri-shim-pause' "$LOG"
check "with the built one" cmp -s "$SRC/_output/bin/cri-shim-pause" /usr/local/bin/cri-shim-pause
new=$(main_pid)
check "and cri-shim restarted (main PID $pid -> $new)" bash -c "[[ $new != $pid && $new != 0 ]]"
check "an edited config.toml is kept" grep -q 'edited by install-test.sh' /etc/cri-shim/config.toml
check "and install.sh says so" grep -q 'kept /etc/cri-shim/config.toml' "$LOG"
check "cri-shim is active" systemctl is-active --quiet cri-shim

pid=$(main_pid)
run_install --prefix /opt/cri-shim-test --no-start
for f in cri-shim cri-shim-monitor cri-shim-pause; do
	check "--prefix installs $f" test -x "/opt/cri-shim-test/bin/$f"
done
check "--prefix rewrites ExecStart" grep -q '^ExecStart=/opt/cri-shim-test/bin/cri-shim ' /etc/systemd/system/cri-shim.service
check "--no-start restarts nothing" test "$(main_pid)" = "$pid"
# Back to the default layout: the unit changed, so cri-shim restarts.
run_install
check "back to /usr/local" grep -q '^ExecStart=/usr/local/bin/cri-shim ' /etc/systemd/system/cri-shim.service
check "cri-shim restarted after the unit changed" bash -c "[[ \$(systemctl show -p MainPID --value cri-shim) != $pid ]]"
check "cri-shim runs /usr/local/bin/cri-shim" test "$(readlink "/proc/$(main_pid)/exe")" = /usr/local/bin/cri-shim
rm -rf /opt/cri-shim-test

if [[ $failed == 0 ]]; then echo "[install-test] all checks passed"; else echo "[install-test] some checks FAILED"; fi
exit "$failed"
