#!/usr/bin/env bash
# image.sh: builds (once) the Debian 13 (trixie) image that hack/vm/run.sh
# boots, and prints its directory on stdout.
#
#   hack/vm/image.sh            build it unless cached; print its directory
#   hack/vm/image.sh --rebuild  build it even if cached
#
# The image is what a real Kubernetes node runs: systemd as PID 1, cgroup v2
# only, AppArmor on (trixie's defaults), Debian's 6.12 kernel, runc and crun,
# plus what the tests need (hack/vm/packages.txt). It lives in
#   $VM_CACHE/images/<key>/     (VM_CACHE default /var/cache/cri-shim-dev/vm)
#     root.img     raw ext4 root filesystem, read-only: every run boots a
#                  throwaway qcow2 overlay on top of it
#     vmlinuz      the kernel (linux-image-amd64 of trixie)
#     initrd.img   a tiny initramfs: static busybox /init (initramfs-init.sh)
#                  and the modules that mount /dev/vda
#     info         kernel, package versions, mirror, build times
# <key> is a hash of this script, packages.txt and initramfs-init.sh: change
# one and the next run builds a new image. Builds take a lock (two runs never
# build at once), happen in a temp dir next to the cache and are renamed into
# place when complete, after a first boot under qemu has checked the image
# (and compiled AppArmor's profile cache, which every later boot reuses).
#
# Build steps, all from Debian's mirror (the one this host's apt uses, or
# $VM_MIRROR) and nothing else: debootstrap --variant=minbase of trixie with
# packages.txt; the kernel .deb that trixie's linux-image-amd64 depends on,
# fetched by name from the mirror's pool (checked against the Packages index
# debootstrap verified) and unpacked into the root filesystem; busybox-static
# of this host (apt-get download, never installed: it conflicts with busybox)
# for the initramfs; mkfs.ext4 -d (no loop mounts). Host packages it needs
# (qemu-system-x86, qemu-utils, debootstrap, ...) are apt-get installed when
# missing. Cold build: a few minutes (most of it debootstrap and downloads).
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_LOG_PREFIX=vm-image
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=hack/vm/lib.sh
source "$VM_DIR/lib.sh"

SUITE=trixie
KERNEL_META=linux-image-amd64
# Modules the initramfs loads (with their dependencies, from modules.dep) to
# mount the ext4 root on virtio-blk; built-in ones are skipped. ext4/jbd2
# checksums ask the crypto API for crc32c, which no modprobe can load there.
INITRAMFS_MODULES=(crc32c_generic crc32c-intel virtio_blk ext4)
# Sparse: the overlay of a run grows only by what it writes.
DISK_SIZE=${VM_DISK_SIZE:-16G}
# Seconds to let the first boot finish (TCG is slow, more so on a busy host).
WARMUP_TIMEOUT=${VM_WARMUP_TIMEOUT:-900}
# Images not used for this long are deleted when another image is built.
PRUNE_DAYS=2

REBUILD=0
case ${1:-} in
--rebuild) REBUILD=1 ;;
"") ;;
-h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument: $1 (see --help)" ;;
esac
[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot, device nodes)"

# image_key: the hash of every input that decides the image's content.
image_key() {
	(cd "$VM_DIR" && sha256sum image.sh packages.txt initramfs-init.sh) | sha256sum | cut -c1-16
}

# debian_mirror: the Debian mirror this host's apt uses for its own release
# (deb822 .sources or one-line .list), unless $VM_MIRROR says otherwise.
debian_mirror() {
	if [[ -n ${VM_MIRROR:-} ]]; then
		echo "${VM_MIRROR%/}"
		return
	fi
	local codename uri f
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || die "no VERSION_CODENAME in /etc/os-release: set VM_MIRROR"
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		# A stanza (paragraph) of type deb for the host's release, not security.
		uri=$(awk -v c="$codename" 'BEGIN { RS = "" }
			{
				types = suites = uris = ""; enabled = 1
				n = split($0, l, "\n")
				for (i = 1; i <= n; i++) {
					if (l[i] ~ /^Types:/) types = " " substr(l[i], 7) " "
					if (l[i] ~ /^Suites:/) suites = " " substr(l[i], 8) " "
					if (l[i] ~ /^URIs:/) uris = substr(l[i], 6)
					if (l[i] ~ /^Enabled:[ \t]*no/) enabled = 0
				}
				if (enabled && types ~ /[ \t]deb[ \t]/ && suites ~ ("[ \t]" c "[ \t]") && uris !~ /security/) {
					split(uris, u, " "); print u[1]; exit
				}
			}' "$f")
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk -v c="$codename" '$1 == "deb" { i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; if ($i ~ /^\[/ || $i ~ /\]$/) i++
			if ($(i + 1) == c && $i !~ /security/) { print $i; exit } }')
	[[ -n $uri ]] || die "found no Debian mirror for $codename in /etc/apt: set VM_MIRROR"
	echo "${uri%/}"
}

# packages_field FILE PACKAGE FIELD: FIELD of PACKAGE's stanza in an apt
# Packages index (exact name match: kernel names hold '+').
packages_field() {
	awk -v p="Package: $2" -v f="$3: " 'BEGIN { RS = "" }
		{ n = split($0, l, "\n"); if (l[1] != p) next
		  for (i = 2; i <= n; i++) if (index(l[i], f) == 1) { print substr(l[i], length(f) + 1); exit } }' "$1"
}

# fetch_kernel ROOTFS: unpack the kernel trixie's linux-image-amd64 depends on
# into ROOTFS; prints its version (like 6.12.117+deb13-amd64).
fetch_kernel() {
	local rootfs=$1 index pkg file sum deb
	index=$(compgen -G "$rootfs/var/lib/apt/lists/*_dists_${SUITE}_main_binary-amd64_Packages" | head -1 || true)
	[[ -f $index ]] || die "debootstrap left no Packages index of $SUITE in $rootfs/var/lib/apt/lists"
	pkg=$(packages_field "$index" "$KERNEL_META" Depends | awk '{print $1}')
	[[ $pkg == linux-image-* ]] || die "$KERNEL_META depends on '$pkg', not a linux-image package"
	file=$(packages_field "$index" "$pkg" Filename)
	sum=$(packages_field "$index" "$pkg" SHA256)
	[[ -n $file && -n $sum ]] || die "no Filename/SHA256 for $pkg in $index"
	deb=$VM_CACHE/debs/${file##*/}
	if [[ ! -f $deb ]] || ! echo "$sum  $deb" | sha256sum -c --quiet >/dev/null 2>&1; then
		log "downloading $MIRROR/$file"
		curl -fsSL --retry 3 -o "$deb.part" "$MIRROR/$file" || die "cannot download $MIRROR/$file"
		echo "$sum  $deb.part" | sha256sum -c --quiet >/dev/null || die "$file: SHA256 differs from the Packages index"
		mv "$deb.part" "$deb"
	fi
	dpkg-deb -x "$deb" "$rootfs"
	# The package must not have replaced merged /usr's /lib symlink.
	[[ -L $rootfs/lib ]] || die "unpacking $pkg replaced the /lib symlink of $rootfs"
	echo "${pkg#linux-image-}"
}

# build_initramfs ROOTFS KVER OUT: OUT/initrd.img with a static busybox, the
# /init script and INITRAMFS_MODULES (plus dependencies, in load order).
build_initramfs() {
	local rootfs=$1 kver=$2 out=$3 dir moddir line path name m found
	dir=$(mktemp -d "$WORK/initramfs.XXXXXX")
	moddir=$rootfs/usr/lib/modules/$kver
	[[ -f $moddir/modules.dep ]] || die "no modules.dep in $moddir"

	# busybox-static of this host, unpacked only (installing it would remove
	# busybox, which hack/testimages needs).
	# As root: the _apt sandbox user cannot write to the work directory.
	if ! (cd "$WORK" && apt-get download -qq -o APT::Sandbox::User=root busybox-static >/dev/null 2>&1); then
		apt-get -o DPkg::Lock::Timeout=900 -qq update # lists removed or stale
		(cd "$WORK" && apt-get download -qq -o APT::Sandbox::User=root busybox-static >/dev/null) ||
			die "apt-get download busybox-static failed"
	fi
	dpkg-deb -x "$(compgen -G "$WORK/busybox-static_*.deb" | head -1)" "$WORK/busybox-static"
	mkdir -p "$dir"/{bin,dev,proc,sys,newroot,lib/modules}
	install -m 0755 "$WORK/busybox-static/bin/busybox" "$dir/bin/busybox"
	install -m 0755 "$VM_DIR/initramfs-init.sh" "$dir/init"
	# The kernel opens /dev/console for /init before anything mounts /dev.
	mknod -m 600 "$dir/dev/console" c 5 1

	local -A mod_path=() mod_deps=() seen=()
	local order=()
	while IFS= read -r line; do
		path=${line%%:*}
		name=${path##*/}
		name=${name%%.ko*}
		mod_path[${name//-/_}]=$path
		mod_deps[$path]=${line#*:}
	done <"$moddir/modules.dep"
	add_module() { # dependencies first (modules.dep lists them all)
		local p=$1 d
		[[ -n ${seen[$p]:-} ]] && return 0
		seen[$p]=1
		for d in ${mod_deps[$p]}; do add_module "$d"; done
		order+=("$p")
	}
	for m in "${INITRAMFS_MODULES[@]}"; do
		name=${m//-/_}
		if [[ -n ${mod_path[$name]:-} ]]; then
			add_module "${mod_path[$name]}"
			continue
		fi
		found=$(sed -e 's|.*/||' -e 's|\.ko.*||' -e 's|-|_|g' "$moddir/modules.builtin" | grep -cx -- "$name" || true)
		[[ $found -gt 0 ]] || die "module $m is neither a module nor built into $kver"
	done
	: >"$dir/modules.order"
	for path in "${order[@]}"; do
		name=${path##*/}
		# busybox insmod reads plain .ko files only.
		case $name in
		*.ko.xz) xz -dc "$moddir/$path" >"$dir/lib/modules/${name%.xz}"; name=${name%.xz} ;;
		*.ko.zst) zstd -qdc "$moddir/$path" >"$dir/lib/modules/${name%.zst}"; name=${name%.zst} ;;
		*.ko.gz) gzip -dc "$moddir/$path" >"$dir/lib/modules/${name%.gz}"; name=${name%.gz} ;;
		*) cp "$moddir/$path" "$dir/lib/modules/$name" ;;
		esac
		echo "$name" >>"$dir/modules.order"
	done
	log "initramfs modules: $(tr '\n' ' ' <"$dir/modules.order")"
	(cd "$dir" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 >"$out/initrd.img"
}

# write_file PATH MODE: stdin into PATH (parents made).
write_file() {
	mkdir -p "$(dirname "$1")"
	cat >"$1"
	chmod "$2" "$1"
}

# configure_rootfs ROOTFS: make the debootstrapped tree a node that boots
# headless, runs hack/vm/run.sh's script once and powers off.
configure_rootfs() {
	local r=$1 u
	echo cri-shim-vm >"$r/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tcri-shim-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
	# The initramfs mounts the root read-write; every run has a fresh overlay.
	printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n' >"$r/etc/fstab"
	# The VM has no network device; nothing resolves names.
	printf '# cri-shim VM: no network device, no DNS\n' >"$r/etc/resolv.conf"
	ln -sf /usr/lib/systemd/system/multi-user.target "$r/etc/systemd/system/default.target"
	# The serial console carries the script's output: no getty on it (or
	# anywhere). No timers that would run apt, fstrim or e2scrub mid-test.
	for u in getty.target getty@.service serial-getty@.service console-getty.service \
		apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer e2scrub_all.timer \
		e2scrub_reap.service systemd-networkd-wait-online.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	mkdir -p "$r/src" "$r/out" "$r/tools"
	# udev would load drivers for qemu's emulated PC (floppy, IDE, KVM for
	# -cpu max's SVM, ...) in parallel with the boot: seconds of emulated CPU
	# for nothing the node uses.
	write_file "$r/etc/modprobe.d/cri-shim-vm.conf" 0644 <<-'EOF'
	# hack/vm/image.sh: drivers of the emulated machine that the node never uses.
	blacklist floppy
	blacklist kvm
	blacklist kvm_amd
	blacklist kvm_intel
	blacklist pcspkr
	blacklist joydev
	blacklist psmouse
	blacklist serio_raw
	blacklist i2c_piix4
	blacklist powernow_k8
	blacklist ata_piix
	blacklist pata_acpi
	blacklist ata_generic
	EOF

	write_file "$r/etc/systemd/system/cri-shim-vm-run.service" 0644 <<-'EOF'
	# Baked into the image by hack/vm/image.sh: runs, once per boot, the script
	# hack/vm/run.sh was given (/usr/local/sbin/cri-shim-vm-run), with its
	# output on the serial console, then powers the VM off.
	[Unit]
	Description=cri-shim VM harness: install cri-shim, run the script, power off
	After=multi-user.target
	ConditionKernelCommandLine=!cri_shim_vm.warmup

	[Service]
	# exec, not oneshot: boot finishes (is-system-running) while the script runs.
	Type=exec
	ExecStart=/usr/local/sbin/cri-shim-vm-run
	StandardInput=null
	StandardOutput=tty
	StandardError=inherit
	TTYPath=/dev/ttyS0
	TTYReset=no
	TTYVHangup=no

	[Install]
	WantedBy=multi-user.target
	EOF
	write_file "$r/usr/local/sbin/cri-shim-vm-run" 0755 <<-'EOF'
	#!/bin/bash
	# Baked into the image by hack/vm/image.sh. Mounts the host's shares (9p,
	# see hack/vm/run.sh) and hands over to the checkout's hack/vm/in-guest.sh,
	# so the harness's logic changes without rebuilding the image.
	set -u
	fail() {
		echo "[vm] error: $*"
		systemctl poweroff --no-block
		exit 1
	}
	modprobe -a 9pnet_virtio 9p || fail "cannot load the 9p modules"
	# tag:mountpoint:options. The repo and the tools are read-only on the host
	# side too; only /out is written.
	for share in src:/src:ro,cache=loose tools:/tools:ro,cache=loose out:/out:rw; do
		IFS=: read -r tag dir opts <<<"$share"
		mount -t 9p -o "trans=virtio,version=9p2000.L,msize=524288,$opts" "$tag" "$dir" ||
			fail "cannot mount the 9p share $tag on $dir"
	done
	[[ -f /src/hack/vm/in-guest.sh ]] || fail "no /src/hack/vm/in-guest.sh: is /src a cri-shim checkout?"
	exec /bin/bash /src/hack/vm/in-guest.sh
	EOF

	write_file "$r/etc/systemd/system/cri-shim-vm-warmup.service" 0644 <<-'EOF'
	# Baked into the image by hack/vm/image.sh: the first boot at build time
	# (kernel parameter cri_shim_vm.warmup) checks that the image boots clean
	# and leaves caches (AppArmor's compiled profiles) for every later boot.
	[Unit]
	Description=cri-shim VM image: first boot check
	After=multi-user.target
	ConditionKernelCommandLine=cri_shim_vm.warmup

	[Service]
	Type=exec
	ExecStart=/usr/local/sbin/cri-shim-vm-warmup
	StandardInput=null
	StandardOutput=tty
	StandardError=inherit
	TTYPath=/dev/ttyS0
	TTYReset=no
	TTYVHangup=no

	[Install]
	WantedBy=multi-user.target
	EOF
	write_file "$r/usr/local/sbin/cri-shim-vm-warmup" 0755 <<-'EOF'
	#!/bin/bash
	# Baked into the image by hack/vm/image.sh; see cri-shim-vm-warmup.service.
	set -u
	state=$(systemctl is-system-running --wait 2>/dev/null)
	up=$(cut -d' ' -f1 /proc/uptime)
	echo "[vm-warmup] system $state after ${up}s; kernel $(uname -r); cgroup $(stat -fc %T /sys/fs/cgroup);" \
		"apparmor $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)"
	systemctl --failed --no-legend --plain | sed 's/^/[vm-warmup] failed unit: /'
	systemd-analyze 2>/dev/null | sed 's/^/[vm-warmup] /'
	echo "[vm-warmup] cri-shim-vm: warm-up done ($state)"
	sync
	systemctl poweroff --no-block
	EOF
	ln -sf /etc/systemd/system/cri-shim-vm-run.service "$r/etc/systemd/system/multi-user.target.wants/cri-shim-vm-run.service"
	ln -sf /etc/systemd/system/cri-shim-vm-warmup.service "$r/etc/systemd/system/multi-user.target.wants/cri-shim-vm-warmup.service"

	# The apt lists (~60 MB) and the downloaded .debs are of no use offline.
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin
}

# warmup OUT: boot the new image once (writable, no overlay) and check that
# it reaches multi-user.target with no failed unit.
# A kernel panic of the boot (multi-threaded TCG's rare "Oops: int3", NOTES.md)
# boots again, up to 3 times; the journal replays whatever it left.
warmup() {
	local out=$1 rc attempt state
	vm_qemu_args "$out" "$out/root.img" raw "cri_shim_vm.warmup"
	for ((attempt = 1; ; attempt++)); do
		rc=0
		log "first boot of the image (checks it; caches AppArmor's profiles), console in $LOGS/first-boot.log"
		run_stoppable timeout --kill-after=10 "$WARMUP_TIMEOUT" "${QEMU_ARGS[@]}" \
			-chardev "stdio,id=console,signal=off,logfile=$LOGS/first-boot.log" -serial chardev:console \
			>/dev/null || rc=$?
		grep -a '\[vm-warmup\]\|initramfs:\|Kernel panic' "$LOGS/first-boot.log" | sed 's/^/  /' >&2 || true
		if ((attempt >= 3)) || [[ $rc != 0 ]]; then
			break
		fi
		grep -aq 'cri-shim-vm: warm-up done' "$LOGS/first-boot.log" && break
		grep -aq 'Kernel panic' "$LOGS/first-boot.log" || break
		mv "$LOGS/first-boot.log" "$LOGS/first-boot.panic-$attempt.log"
		log "the guest kernel panicked (console: $LOGS/first-boot.panic-$attempt.log): booting again"
	done
	[[ $rc == 124 ]] && die "the first boot did not finish in ${WARMUP_TIMEOUT}s (console: $LOGS/first-boot.log)"
	[[ $rc == 0 ]] || die "qemu exited $rc on the first boot (console: $LOGS/first-boot.log)"
	state=$(grep -ao 'cri-shim-vm: warm-up done ([a-z-]*)' "$LOGS/first-boot.log" | sed 's/.*(\(.*\))/\1/' || true)
	[[ -n $state ]] || die "the first boot never reached multi-user.target (console: $LOGS/first-boot.log)"
	[[ $state == running ]] || die "the first boot ended '$state', not 'running': failed units above (console: $LOGS/first-boot.log)"
}

# prune: delete other images nobody used for PRUNE_DAYS, unless a run holds
# their in-use lock (run.sh takes it shared while booted on one).
prune() {
	local keep=$1 d
	for d in "$VM_CACHE"/images/*/; do
		d=${d%/}
		[[ $d == "$keep" || ! -f $d/in-use.lock ]] && continue
		[[ -n $(find "$d/in-use.lock" -mtime "-$PRUNE_DAYS" 2>/dev/null) ]] && continue
		if flock -n -x "$d/in-use.lock" rm -rf --one-file-system "$d"; then
			log "deleted the unused old image $d"
		fi
	done
	return 0
}

build() {
	local dest=$1 start=$SECONDS t rootfs out kver pkgs
	WORK=$(mktemp -d "$VM_CACHE/build.XXXXXX")
	trap 'stop_stoppable; rm -rf --one-file-system "$WORK"' EXIT
	# Logs outlive a failed build.
	LOGS=$VM_CACHE/logs/$(basename "$dest")
	rm -rf "$LOGS"
	mkdir -p "$LOGS"
	rootfs=$WORK/rootfs out=$WORK/image
	mkdir -p "$out" "$VM_CACHE/debs"
	MIRROR=$(debian_mirror)
	pkgs=$(sed -e 's/#.*//' "$VM_DIR/packages.txt" | xargs | tr ' ' ',')
	log "building the $SUITE image $(basename "$dest") from $MIRROR (packages: $pkgs)"

	t=$SECONDS
	# A private mount namespace: debootstrap's /proc and /sys mounts in the
	# chroot vanish with it even if it is killed.
	run_stoppable unshare --mount --propagation private -- \
		debootstrap --variant=minbase --cache-dir="$VM_CACHE/debs" --include="$pkgs" \
		"$SUITE" "$rootfs" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 ||
		{ tail -20 "$LOGS/debootstrap.log" >&2; die "debootstrap failed (log: $LOGS/debootstrap.log)"; }
	local t_debootstrap=$((SECONDS - t))

	t=$SECONDS
	kver=$(fetch_kernel "$rootfs")
	chroot "$rootfs" /usr/sbin/depmod -a "$kver"
	cp "$rootfs/boot/vmlinuz-$kver" "$out/vmlinuz"
	build_initramfs "$rootfs" "$kver" "$out"
	local t_kernel=$((SECONDS - t))

	configure_rootfs "$rootfs"
	{
		echo "key: $(basename "$dest")"
		echo "suite: $SUITE"
		echo "mirror: $MIRROR"
		echo "kernel: $kver"
		echo "built: $(date -u +%FT%TZ)"
		# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
		chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' systemd runc crun apparmor busybox \
			containernetworking-plugins iproute2 nftables util-linux | sed 's/^/package: /'
	} >"$out/info"
	# shellcheck disable=SC2016
	chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$out/packages.lst"

	t=$SECONDS
	truncate -s "$DISK_SIZE" "$out/root.img"
	mkfs.ext4 -q -F -L cri-shim-vm -d "$rootfs" "$out/root.img"
	rm -rf --one-file-system "$rootfs"
	local t_mkfs=$((SECONDS - t))

	t=$SECONDS
	warmup "$out"
	local t_warmup=$((SECONDS - t))

	printf 'build-seconds: debootstrap %s, kernel+initramfs %s, mkfs %s, first boot %s, total %s\n' \
		"$t_debootstrap" "$t_kernel" "$t_mkfs" "$t_warmup" "$((SECONDS - start))" >>"$out/info"
	# Nothing may write the base image again: runs open it as a backing file.
	chmod 0444 "$out/root.img"
	cp "$LOGS/first-boot.log" "$out/first-boot.log"
	: >"$out/in-use.lock"
	rm -rf --one-file-system "$dest"
	mv "$out" "$dest"
	log "built $dest in $((SECONDS - start))s (debootstrap ${t_debootstrap}s, kernel+initramfs ${t_kernel}s," \
		"mkfs ${t_mkfs}s, first boot ${t_warmup}s)"
	prune "$dest"
}

main() {
	local key dest
	key=$(image_key)
	dest=$VM_CACHE/images/$key
	if [[ $REBUILD == 0 && -f $dest/root.img ]]; then
		echo "$dest"
		return
	fi
	mkdir -p "$VM_CACHE/images"
	trap 'exit 130' INT
	trap 'exit 143' TERM
	exec 9>"$VM_CACHE/image.lock"
	if ! flock -n 9; then
		log "waiting for another image build (lock $VM_CACHE/image.lock)"
		flock 9
	fi
	# Built meanwhile by the holder of the lock.
	if [[ $REBUILD == 1 || ! -f $dest/root.img ]]; then
		# Under the lock, any build directory is a killed build's.
		rm -rf --one-file-system "$VM_CACHE"/build.*
		ensure_host_packages "${VM_IMAGE_HOST_PACKAGES[@]}"
		build "$dest"
	fi
	echo "$dest"
}

main
