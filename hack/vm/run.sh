#!/usr/bin/env bash
# run.sh: runs a script of this repo as root inside a fresh, throwaway
# Debian 13 VM that is a modern Kubernetes node (systemd as PID 1, cgroup v2
# only, AppArmor on, kernel 6.12, runc and crun), with cri-shim installed by
# deploy/install.sh and running under systemd.
#
#   hack/vm/run.sh SCRIPT [ARGS...]
#   hack/vm/run.sh hack/vm/guest/probe.sh      # smoke test: systemd, cgroup2, AppArmor, cri-shim
#   hack/vm/run.sh hack/vm/guest/critest.sh    # critest against the systemd-managed cri-shim
#
# Contract (other tools rely on it):
#  - On the host (root, Debian 12): builds the project (hack/build.sh ->
#    _output/bin), critest/crictl/ginkgo (hack/lib/cri-tools.sh, cached in
#    /var/cache/cri-shim-dev/tools), testimages and critest-report (static),
#    and the testimages helper programs (cached in $TESTIMAGES_CACHE, default
#    ~/.cache/cri-shim-testimages, the same cache as hack/critest.sh); gets
#    the VM image from hack/vm/image.sh (built once, cached in
#    /var/cache/cri-shim-dev/vm, rebuilt when its inputs change). Missing host
#    packages (qemu-system-x86, qemu-utils, debootstrap, gcc, busybox, ...)
#    are apt-get installed.
#  - Boots a FRESH VM: a qcow2 overlay on the cached image, deleted at the
#    end, so no run sees another's state. qemu TCG (-accel tcg,thread=multi
#    -cpu max -smp 2 -m 4G; VM_CPUS, VM_MEMORY), no network device at all
#    (-nic none, -nodefaults).
#  - Shares (9p) in the guest: /src = this checkout, read-only; /tools =
#    critest, crictl, ginkgo, testimages, critest-report, checkpointctl (and kubelet, kubectl,
#    kube-apiserver when hack/kube/build.sh has them cached, with the host's
#    etcd and a service-account key in /tools/pki) in /tools/bin, runc 1.5.3
#    (hack/install-runc.sh) in /tools/runc, the
#    testimages cache in /tools/testimages-cache and /tools/testimages-go (a
#    stand-in for `go env GOVERSION`, the guest has no Go), read-only; /out =
#    a fresh host directory for results (printed at start; VM_OUT names it,
#    it must be empty).
#  - In the guest (hack/vm/in-guest.sh): /src/deploy/install.sh installs
#    cri-shim from /src/_output/bin and starts it under systemd (VM_INSTALL=0
#    skips that); then /src/SCRIPT ARGS... runs as root in /src, with PATH
#    starting at /tools/bin and VM_OUT=/out, its output streamed live on the
#    serial console to this script's stdout (also in /out/console.log); then
#    /out/cri-shim.journal (journalctl -u cri-shim), /out/journal.txt,
#    /out/dmesg.txt are written and the VM powers off.
#  - Exit status: SCRIPT's exit code; 124 when VM_TIMEOUT (default 3600 s,
#    from boot to power-off) expired; 125 when the VM never ran SCRIPT (it
#    did not boot within VM_BOOT_TIMEOUT, default 900 s, or install.sh
#    failed, or its kernel died before SCRIPT started VM_BOOT_ATTEMPTS
#    times, default 3, each on a fresh overlay: an emulator flake, see
#    boot_vm's caller); 126 when the VM stopped while SCRIPT ran (crash,
#    panic; never retried); 130/143 on SIGINT/SIGTERM. qemu is stopped by
#    its PID, never by name.
#
# Measured under TCG on 2 cores: boot to SCRIPT 26-31 s (install.sh
# included), power-off 2-5 s; the first run also builds the image (2.5 min
# on an idle host, ~7 min on a busy one) and the critest tools (~3 min).
# See hack/vm/README.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_DIR=$REPO/hack/vm
VM_LOG_PREFIX=vm
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=hack/vm/lib.sh
source "$VM_DIR/lib.sh"
# shellcheck source=hack/lib/cri-tools.sh
source "$REPO/hack/lib/cri-tools.sh"

EXIT_TIMEOUT=124 EXIT_NOT_RUN=125 EXIT_VM_DIED=126
VM_TIMEOUT=${VM_TIMEOUT:-3600}
VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-900}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit "${1:-0}"
}

# qemu_path PATH: PATH escaped for a qemu option value (',' doubles).
qemu_path() { printf '%s' "${1//,/,,}"; }

# alive PID: the process runs (a zombie of ours does not count).
alive() {
	kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# stop_qemu: SIGTERM to qemu by its PID, SIGKILL after 10 s.
stop_qemu() {
	local i
	[[ -n ${QEMU_PID:-} ]] || return 0
	if alive "$QEMU_PID"; then
		kill -TERM "$QEMU_PID" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$QEMU_PID" || break
			sleep 0.1
		done
		alive "$QEMU_PID" && kill -KILL "$QEMU_PID" 2>/dev/null
	fi
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop_stoppable
	stop_qemu
	[[ -n ${WORK:-} && -d $WORK ]] && rm -rf --one-file-system "$WORK"
	[[ -n ${OUT:-} ]] && log "results in $OUT"
	exit "$rc"
}

# shellcheck disable=SC2317 # run by the INT and TERM traps
interrupted() {
	log "interrupted ($1): stopping the VM"
	case $1 in INT) exit 130 ;; *) exit 143 ;; esac
}

# prepare_tools DIR: everything /tools holds in the guest.
prepare_tools() {
	local dir=$1 cache goversion
	mkdir -p "$dir/bin" "$dir/testimages-cache"
	build_tools
	cp "$TOOLS_DIR/critest" "$TOOLS_DIR/crictl" "$TOOLS_DIR/ginkgo" "$dir/bin/"
	log "building testimages, critest-report and checkpointctl (static)"
	(
		cd "$REPO"
		CGO_ENABLED=0 go build -o "$dir/bin/testimages" ./hack/testimages
		CGO_ENABLED=0 go build -o "$dir/bin/critest-report" ./hack/critest/report
		# checkpointctl reads CheckpointContainer's archives as users do; the
		# version of the metadata library go.mod pins.
		GOBIN="$dir/bin" CGO_ENABLED=0 GOFLAGS= go install \
			"github.com/checkpoint-restore/checkpointctl@$(go list -m -f '{{.Version}}' github.com/checkpoint-restore/checkpointctl)"
	)
	# The images' helper programs are built with go, which the guest lacks:
	# build them here into the cache and give the guest a copy, with a
	# stand-in go that answers only `go env GOVERSION` (the cache key) with
	# this go's version. The guest builds the images themselves from its own
	# busybox.
	cache=${TESTIMAGES_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/cri-shim-testimages}
	"$dir/bin/testimages" list --cache-dir "$cache" >/dev/null
	cp -r "$cache"/progs-* "$dir/testimages-cache/"
	goversion=$(go env GOVERSION)
	cat >"$dir/testimages-go" <<-EOF
		#!/bin/sh
		# Written by hack/vm/run.sh: the VM has no Go toolchain. testimages
		# (--go /tools/testimages-go) asks only for the version, the key of its
		# cache in /tools/testimages-cache, built on the host by $goversion.
		if [ "\$*" = "env GOVERSION" ]; then echo $goversion; exit 0; fi
		echo "go: no Go toolchain in the VM (hack/vm/run.sh builds on the host)" >&2
		exit 1
	EOF
	chmod 0755 "$dir/testimages-go"
	# kubelet and kubectl when hack/kube/build.sh has them cached (never
	# built here: ~15 min on 2 cores). A hard link where the filesystem
	# allows, else a copy.
	# The runc deploy/README.md installs for user namespaces (Debian 13's
	# 1.1.15 cannot idmap mounts): outside bin/, so it replaces the guest's
	# only where a script installs it (guest/critest.sh --install-runc).
	RUNC_DEST="$dir/runc/runc" "$REPO/hack/install-runc.sh"
	local kube=${KUBE_CACHE_DIR:-/var/cache/cri-shim-dev/kube-${KUBE_VERSION:-v1.37.2}} b
	for b in kubelet kubectl kube-apiserver; do
		[[ -x $kube/$b ]] || continue
		cp -l "$kube/$b" "$dir/bin/$b" 2>/dev/null || cp "$kube/$b" "$dir/bin/$b"
	done
	# guest/cluster.sh's control plane: the host's etcd (Debian's
	# etcd-server, which hack/kubelet-e2e.sh installs; a bookworm binary
	# runs on trixie) and a service-account signing key, made here since
	# the guest has no openssl. Only beside a cached kube-apiserver.
	if [[ -x $dir/bin/kube-apiserver ]] && command -v etcd >/dev/null && command -v openssl >/dev/null; then
		cp "$(command -v etcd)" "$dir/bin/etcd"
		mkdir -p "$dir/pki"
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/pki/sa.key" 2>/dev/null
		chmod 0644 "$dir/pki/sa.key" # a throwaway key for one VM run; the share is read-only
	fi
}

main() {
	[[ $# -ge 1 ]] || usage 2
	case $1 in -h | --help) usage 0 ;; esac
	[[ $(id -u) == 0 ]] || die "run as root (qemu, the image build, the caches in /var/cache)"
	local script=$1 abs
	shift
	abs=$(cd "$REPO" && realpath -m -- "$script")
	[[ $abs == "$REPO"/* ]] || die "$script is not inside the checkout $REPO (the guest sees only /src)"
	script=${abs#"$REPO"/}
	[[ -f $REPO/$script ]] || die "no such script: $REPO/$script"
	[[ $VM_TIMEOUT =~ ^[0-9]+$ && $VM_BOOT_TIMEOUT =~ ^[0-9]+$ ]] || die "VM_TIMEOUT and VM_BOOT_TIMEOUT are seconds"

	trap cleanup EXIT
	trap 'interrupted INT' INT
	trap 'interrupted TERM' TERM
	if [[ -n ${VM_OUT:-} ]]; then
		OUT=$(realpath -m "$VM_OUT")
		mkdir -p "$OUT"
		[[ -z $(ls -A "$OUT") ]] || { local o=$OUT; OUT=; die "VM_OUT=$o is not empty"; }
	else
		OUT=$(mktemp -d /tmp/cri-shim-vm-out.XXXXXX)
	fi
	chmod 755 "$OUT"
	log "results of this run: $OUT"
	WORK=$(mktemp -d /tmp/cri-shim-vm.XXXXXX)

	# Everything from apt up front, in the foreground: a stopped run must
	# not kill apt midway (the builds below are stopped at once).
	ensure_host_packages gcc libc6-dev busybox "${VM_IMAGE_HOST_PACKAGES[@]}"
	command -v go >/dev/null || die "no go toolchain on PATH or in /usr/local/go/bin"
	run_stoppable "$VM_DIR/run.sh" __prepare "$WORK/tools" || die "building the project or the tools failed"

	local image
	if [[ -n ${VM_IMAGE:-} ]]; then
		image=$VM_IMAGE
		[[ -f $image/root.img ]] || die "VM_IMAGE=$image has no root.img"
	else
		run_stoppable "$VM_DIR/image.sh" >"$WORK/image" || die "hack/vm/image.sh failed"
		image=$(cat "$WORK/image")
	fi
	# Shared while booted on it: image.sh deletes old images only when no
	# run holds this lock; its mtime says when the image was last used.
	exec {image_lock}<"$image/in-use.lock"
	flock -s "$image_lock"
	touch "$image/in-use.lock"

	mkdir -p "$OUT/.vm"
	printf '%s\0' "$script" "$@" >"$OUT/.vm/argv"
	printf 'VM_INSTALL=%s\n' "${VM_INSTALL:-1}" >"$OUT/.vm/settings"

	# A guest kernel that dies before SCRIPT starts is booted again, on a
	# fresh overlay: under multi-threaded TCG the kernel's live patching of
	# its own code (static keys, int3 first) now and then leaves a vCPU
	# running a stale translation of the int3, an "Oops: int3" panic in the
	# first seconds of boot (seen once in CI, 2026-12-07). Nothing of SCRIPT
	# has run then, so a second boot changes no result; a panic while SCRIPT
	# runs is never retried (126).
	local attempts=${VM_BOOT_ATTEMPTS:-3} attempt
	[[ $attempts =~ ^[1-9][0-9]*$ ]] || die "VM_BOOT_ATTEMPTS is a positive count"
	for ((attempt = 1; ; attempt++)); do
		boot_vm "$image" "$script" "$@"
		[[ $BOOT_RESULT == died-booting ]] || break
		if ((attempt >= attempts)); then
			log "error: the VM stopped (qemu exit $QEMU_RC) before running $script: it failed to boot $attempt times (console: $OUT/console.log)"
			exit "$EXIT_NOT_RUN"
		fi
		mv "$OUT/console.log" "$OUT/console.boot-$attempt.log"
		log "the VM stopped (qemu exit $QEMU_RC) before running $script:" \
			"$(tr -d '\r' <"$OUT/console.boot-$attempt.log" | grep -a -m1 -o -E '(Oops|Kernel panic).*' || echo 'no panic message')" \
			"(console: $OUT/console.boot-$attempt.log); booting again ($((attempt + 1))/$attempts)"
	done
	case $BOOT_RESULT in
	timeout)
		log "error: timeout: the VM ran longer than VM_TIMEOUT=${VM_TIMEOUT}s; qemu killed"
		exit "$EXIT_TIMEOUT"
		;;
	boot-timeout)
		log "error: the VM did not start $script within VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT}s (console: $OUT/console.log)"
		exit "$EXIT_NOT_RUN"
		;;
	exited)
		local rc
		rc=$(cat "$OUT/.vm/exit-code")
		log "$script exited $rc"
		exit "$rc"
		;;
	install-failed)
		log "error: deploy/install.sh failed in the VM; $script did not run (see above, $OUT/cri-shim.journal)"
		exit "$EXIT_NOT_RUN"
		;;
	died)
		log "error: the VM stopped (qemu exit $QEMU_RC) while $script ran (console: $OUT/console.log)"
		exit "$EXIT_VM_DIED"
		;;
	esac
	die "internal error: boot result $BOOT_RESULT"
}

# boot_vm IMAGE SCRIPT [ARGS...]: boots a fresh overlay of IMAGE and waits
# for qemu to end. Sets QEMU_RC and BOOT_RESULT: timeout, boot-timeout,
# exited (SCRIPT's exit code is in $OUT/.vm/exit-code), install-failed,
# died (while SCRIPT ran) or died-booting (before SCRIPT started).
boot_vm() {
	local image=$1 script=$2
	shift 2
	rm -f "$WORK/overlay.qcow2"
	qemu-img create -q -f qcow2 -F raw -b "$image/root.img" "$WORK/overlay.qcow2"
	vm_qemu_args "$image" "$WORK/overlay.qcow2" qcow2
	QEMU_ARGS+=(
		-virtfs "local,path=$(qemu_path "$REPO"),mount_tag=src,security_model=none,readonly=on,multidevs=remap"
		-virtfs "local,path=$(qemu_path "$WORK/tools"),mount_tag=tools,security_model=none,readonly=on,multidevs=remap"
		-virtfs "local,path=$(qemu_path "$OUT"),mount_tag=out,security_model=none,multidevs=remap"
		-chardev "stdio,id=console,signal=off,logfile=$(qemu_path "$OUT/console.log")" -serial chardev:console
		-pidfile "$WORK/qemu.pid"
	)
	log "booting $(basename "$image") (kernel $(sed -n 's/^kernel: //p' "$image/info")) to run $script${*:+ $*};" \
		"timeout ${VM_TIMEOUT}s"
	local t0=$SECONDS t_started="" t_exited="" timed_out="" boot_timeout=""
	# Its own session: the terminal's Ctrl-C reaches this script, which
	# stops qemu; stdin /dev/null: qemu must not take over the terminal.
	setsid "${QEMU_ARGS[@]}" </dev/null &
	QEMU_PID=$!
	while alive "$QEMU_PID"; do
		[[ -z $t_started && -e $OUT/.vm/started ]] && t_started=$SECONDS
		[[ -z $t_exited && -e $OUT/.vm/exit-code ]] && t_exited=$SECONDS
		if ((SECONDS - t0 >= VM_TIMEOUT)); then
			timed_out=1
			break
		fi
		if [[ -z $t_started && ! -e $OUT/.vm/install-failed ]] && ((SECONDS - t0 >= VM_BOOT_TIMEOUT)); then
			boot_timeout=1
			break
		fi
		sleep 1
	done
	QEMU_RC=0
	if [[ -n $timed_out || -n $boot_timeout ]]; then
		stop_qemu
	else
		wait "$QEMU_PID" || QEMU_RC=$?
		QEMU_PID=
	fi
	local t_end=$SECONDS
	[[ -z $t_started && -e $OUT/.vm/started ]] && t_started=$t_end
	[[ -z $t_exited && -e $OUT/.vm/exit-code ]] && t_exited=$t_end

	local times="boot to script never"
	[[ -n $t_started ]] && times="boot to script $((t_started - t0))s"
	[[ -n $t_started && -n $t_exited ]] && times+=", script $((t_exited - t_started))s, power-off $((t_end - t_exited))s"
	times+=", total $((t_end - t0))s"
	log "VM times: $times"
	if [[ -n $timed_out ]]; then
		BOOT_RESULT=timeout
	elif [[ -n $boot_timeout ]]; then
		BOOT_RESULT=boot-timeout
	elif [[ -s $OUT/.vm/exit-code ]]; then
		BOOT_RESULT=exited
	elif [[ -e $OUT/.vm/install-failed ]]; then
		BOOT_RESULT=install-failed
	elif [[ -e $OUT/.vm/started ]]; then
		BOOT_RESULT=died
	else
		BOOT_RESULT=died-booting
	fi
}

if [[ ${1:-} == __prepare ]]; then
	# The build part of main, in a process group a stopped run can end.
	log "building the project: hack/build.sh (_output/bin)"
	"$REPO/hack/build.sh"
	prepare_tools "$2"
else
	main "$@"
fi
