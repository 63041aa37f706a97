#!/bin/busybox sh
# shellcheck shell=dash
# /init of the VM's initramfs (built by hack/vm/image.sh): a static busybox
# that loads the few modules Debian's 6.12 kernel needs to reach its root
# filesystem (virtio_blk, ext4 and their dependencies, listed in load order in
# /modules.order by image.sh), mounts /dev/vda and hands over to systemd.
# Debian's own initramfs would do the same in ~30 MB and several seconds of
# emulated CPU.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
	echo "initramfs: error: $*"
	# Power off at once: qemu exits, hack/vm/run.sh reports a failed boot.
	poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r m; do
	insmod "/lib/modules/$m" || fail "insmod $m"
done </modules.order

# virtio_blk probes asynchronously: wait up to 20 s for the disk.
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	[ "$i" -gt 200 ] && fail "no /dev/vda after 20 s"
	usleep 100000
done

mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
[ -x /newroot/sbin/init ] || fail "no /sbin/init on /dev/vda"
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/init
