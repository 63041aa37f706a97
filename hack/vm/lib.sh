# shellcheck shell=bash
# lib.sh: helpers shared by hack/vm/image.sh and hack/vm/run.sh (sourced).
# The caller sets VM_LOG_PREFIX and `set -euo pipefail`.

# Every cache of the VM harness lives here; nothing under the checkout.
VM_CACHE=${VM_CACHE:-/var/cache/cri-shim-dev/vm}

# What hack/vm/image.sh needs on the host (run.sh installs them up front:
# apt must not be killed midway when a run is stopped).
# shellcheck disable=SC2034 # used by image.sh and run.sh
VM_IMAGE_HOST_PACKAGES=(qemu-system-x86 qemu-utils debootstrap e2fsprogs cpio xz-utils curl)

log() { printf '[%s] %s\n' "${VM_LOG_PREFIX:-vm}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_host_packages PKG...: apt-get install the Debian packages that are
# missing on this (Debian 12) host. A fresh machine has none of qemu or
# debootstrap; apt waits for the dpkg lock when another apt holds it.
ensure_host_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	log "installing host packages: ${missing[*]}"
	local apt=(apt-get -o DPkg::Lock::Timeout=900 -y -qq)
	export DEBIAN_FRONTEND=noninteractive
	# Only when the lists cannot resolve a package: apt-get update is slow.
	if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
		"${apt[@]}" update
	fi
	"${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# vm_qemu_args IMAGE_DIR DISK FORMAT [KERNEL_ARGS]: sets QEMU_ARGS, the qemu
# command line of a VM of IMAGE_DIR on DISK; the caller adds the console
# (-serial) and the shares (-virtfs).
#  - TCG: /dev/kvm here is a pagetable-based VM host on which a stock guest
#    kernel crawls or aborts (NOTES.md, "A modern node in a virtual machine").
#  - -nodefaults and -nic none: no network device at all, so nothing in the
#    guest can reach any network (a hard rule of this harness).
#  - -no-reboot and panic=-1: a panic or reboot ends qemu instead of looping.
#  - cgroup v2 and AppArmor are trixie's defaults: no kernel parameter.
# VM_CPUS, VM_MEMORY and VM_CMDLINE (extra kernel parameters) override;
# VM_DEBUG=1 shows the kernel's and systemd's boot messages.
vm_qemu_args() {
	local image=$1 disk=$2 format=$3 extra=${4:-} cmdline
	cmdline="console=ttyS0 root=/dev/vda rw panic=-1 edd=off"
	if [[ ${VM_DEBUG:-0} == 1 ]]; then
		cmdline+=" loglevel=7 systemd.show_status=yes"
	else
		cmdline+=" loglevel=4 systemd.show_status=error"
	fi
	cmdline+=" $extra ${VM_CMDLINE:-}"
	# shellcheck disable=SC2034,SC2054 # used by the caller; commas are qemu's
	QEMU_ARGS=(
		qemu-system-x86_64 -name cri-shim-vm
		-nodefaults -no-user-config -nographic -monitor none
		-machine pc -accel tcg,thread=multi -cpu max
		-smp "${VM_CPUS:-2}" -m "${VM_MEMORY:-4G}"
		-nic none
		-no-reboot -rtc base=utc
		-kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$cmdline"
		-drive "file=$disk,format=$format,if=virtio,cache=unsafe"
	)
}

# run_stoppable CMD...: runs CMD in a process group of its own and waits for
# it with `wait`, which a trapped SIGINT/SIGTERM interrupts at once (bash
# runs no trap until a foreground command ends: a TERM during a 5-minute
# debootstrap would wait for it). The caller's trap calls stop_stoppable.
# stdin is /dev/null (a background job's), so qemu never takes the terminal.
STOPPABLE_PGID=
run_stoppable() {
	local rc=0
	# Not a group leader (a background job of a script without job
	# control), so setsid makes a new group without forking: $! leads it.
	setsid "$@" &
	STOPPABLE_PGID=$!
	wait "$STOPPABLE_PGID" || rc=$?
	STOPPABLE_PGID=
	return "$rc"
}

# stop_stoppable: SIGTERM to the process group of run_stoppable's command,
# SIGKILL after 10 s. Only that group: processes this script started.
stop_stoppable() {
	local pgid=${STOPPABLE_PGID:-} i
	[[ -n $pgid ]] || return 0
	STOPPABLE_PGID=
	kill -TERM -- "-$pgid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		group_alive "$pgid" || break
		sleep 0.1
	done
	group_alive "$pgid" && kill -KILL -- "-$pgid" 2>/dev/null
	wait "$pgid" 2>/dev/null || true
}

# group_alive PGID: a process of group PGID still runs (zombies do not count).
group_alive() {
	local f line fields
	for f in /proc/[0-9]*/stat; do
		read -r line 2>/dev/null <"$f" || continue
		# After "pid (comm) ": state ppid pgrp ...
		read -r -a fields <<<"${line##*) }"
		[[ ${fields[2]} == "$1" && ${fields[0]} != Z ]] && return 0
	done
	return 1
}
