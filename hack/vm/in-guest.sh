#!/bin/bash
# in-guest.sh: the part of hack/vm/run.sh that runs INSIDE the VM, as root,
# once per boot. The image's cri-shim-vm-run.service (After=multi-user.target)
# mounts the host's shares (/src: this checkout, read-only; /tools: critest,
# crictl, ginkgo, testimages..., read-only; /out: the run's results) and
# execs this file from /src, so changing it needs no new image.
#
#  1. installs the project the way a user does: /src/deploy/install.sh (from
#     /src/_output/bin; skipped with VM_INSTALL=0), which starts cri-shim
#     under systemd;
#  2. runs /src/SCRIPT ARGS... (from /out/.vm/argv, NUL-separated: no
#     quoting through the kernel command line) in /src, output on the serial
#     console, with PATH starting at /tools/bin and VM_OUT=/out;
#  3. writes SCRIPT's exit code to /out/.vm/exit-code, the journal of this
#     boot to /out/journal.txt, cri-shim's to /out/cri-shim.journal and the
#     kernel log to /out/dmesg.txt, and powers the VM off.
# It never exits early: whatever happens, the VM powers off.
set -uo pipefail

CTL=/out/.vm
export PATH=/tools/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export VM_OUT=/out VM_TOOLS=/tools HOME=/root LANG=C.UTF-8
# The console is logged to a file too: no colours, no hyperlinks.
export SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0
say() { printf '[vm %6.1fs] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }

finish() {
	local rc=$1
	say "collecting the journal into /out"
	journalctl -b -u cri-shim --no-pager -o short-precise >/out/cri-shim.journal 2>&1
	journalctl -b --no-pager -o short-precise >/out/journal.txt 2>&1
	dmesg >/out/dmesg.txt 2>&1
	[[ -n $rc ]] && echo "$rc" >"$CTL/exit-code"
	sync
	say "powering off"
	systemctl poweroff --no-block
	exit 0
}

# Settings from run.sh (KEY=VALUE lines it wrote itself).
VM_INSTALL=1
if [[ -f $CTL/settings ]]; then
	while IFS='=' read -r key value; do
		case $key in
		VM_INSTALL) VM_INSTALL=$value ;;
		esac
	done <"$CTL/settings"
fi

argv=()
[[ -s $CTL/argv ]] && mapfile -d '' -t argv <"$CTL/argv"
if [[ ${#argv[@]} == 0 ]]; then
	say "error: no script in $CTL/argv"
	finish ""
fi
script=${argv[0]}
args=("${argv[@]:1}")

boot_state=$(systemctl is-system-running 2>/dev/null)
say "up: kernel $(uname -r), PID 1 $(cat /proc/1/comm), $(stat -fc %T /sys/fs/cgroup)," \
	"AppArmor $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent), system $boot_state"
systemctl --failed --no-legend --plain | sed 's/^/[vm] failed unit: /'
say "$(systemd-analyze 2>/dev/null | head -1)"

if [[ $VM_INSTALL == 1 ]]; then
	say "installing: /src/deploy/install.sh"
	if ! /src/deploy/install.sh; then
		say "error: /src/deploy/install.sh failed; not running $script"
		touch "$CTL/install-failed"
		finish ""
	fi
fi

# crictl (in /tools/bin) talks to cri-shim unless told otherwise, as
# on a node where crictl is set up for its runtime.
sock=$(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' /etc/cri-shim/config.toml 2>/dev/null | tail -1)
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' \
	"${sock:-/run/cri-shim/cri-shim.sock}" "${sock:-/run/cri-shim/cri-shim.sock}" >/etc/crictl.yaml

touch "$CTL/started"
say "running $script${args[*]:+ ${args[*]}}"
start=$(cut -d' ' -f1 /proc/uptime)
rc=0
if [[ -x /src/$script ]]; then
	(cd /src && exec "/src/$script" "${args[@]}") </dev/null || rc=$?
else
	(cd /src && exec bash "/src/$script" "${args[@]}") </dev/null || rc=$?
fi
say "$script exited $rc after $(awk -v s="$start" '{printf "%.1f", $1 - s}' /proc/uptime)s"
finish "$rc"
