#!/usr/bin/env bash
# install.sh: installs cri-shim and cni-bridge on this node from a checkout,
# after `hack/build.sh` (the steps of deploy/README.md, sections 1 and 2).
#
#   deploy/install.sh [--prefix DIR] [--cni-bin-dir DIR] [--no-start]
#
#   binaries   _output/bin/{cri-shim,cri-shim-monitor,cri-shim-pause} -> PREFIX/bin
#              (PREFIX default /usr/local; the monitor and pause must sit next
#              to cri-shim), _output/bin/cni-bridge -> --cni-bin-dir (default
#              /opt/cni/bin). Each is replaced by a rename, never rewritten in
#              place: a running binary is not disturbed.
#   config     deploy/config.toml -> /etc/cri-shim/config.toml, only if there
#              is none yet (yours is kept; diff it against deploy/config.toml
#              after an upgrade). /etc/cni/net.d is created, left empty.
#   service    deploy/cri-shim.service -> /etc/systemd/system/cri-shim.service
#              (ExecStart pointing at PREFIX/bin/cri-shim), then
#              `systemctl daemon-reload && systemctl enable --now cri-shim`;
#              when a binary or the unit changed and cri-shim was already
#              running, `systemctl restart cri-shim` (containers keep running:
#              the unit has KillMode=process). Then it waits for the socket.
#   --no-start installs and enables the unit but starts nothing. Without a
#              running systemd (e.g. building a node image), the unit is
#              enabled offline and nothing is started either.
#
# Idempotent: a second run changes nothing and restarts nothing. It only
# reads the checkout (which may be read-only). Needs root, and an OCI runtime
# on PATH (apt-get install runc; crun works too, see config.toml's runtime).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILT=$SRC/_output/bin
PREFIX=/usr/local
CNI_BIN_DIR=/opt/cni/bin
CONFIG_DIR=/etc/cri-shim
UNIT_DIR=/etc/systemd/system
START=1

log() { printf '[install.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
	--prefix=*) PREFIX=${1#*=}; shift ;;
	--cni-bin-dir) CNI_BIN_DIR=${2:?--cni-bin-dir needs a directory}; shift 2 ;;
	--cni-bin-dir=*) CNI_BIN_DIR=${1#*=}; shift ;;
	--no-start) START=0; shift ;;
	-h | --help) usage 0 ;;
	*) log "unknown argument: $1"; usage 2 ;;
	esac
done
[[ $PREFIX == /* && $CNI_BIN_DIR == /* ]] || die "--prefix and --cni-bin-dir must be absolute paths"
PREFIX=${PREFIX%/}
[[ $(id -u) == 0 ]] || die "run as root (it writes $PREFIX/bin, $CONFIG_DIR and $UNIT_DIR)"

for f in cri-shim cri-shim-monitor cri-shim-pause cni-bridge; do
	[[ -x $BUILT/$f ]] || die "$BUILT/$f is missing: run hack/build.sh first"
done
for f in config.toml cri-shim.service; do
	[[ -f $SRC/deploy/$f ]] || die "$SRC/deploy/$f is missing: run this from a cri-shim checkout"
done

CHANGED=0

# install_file SRC DEST MODE: install SRC as DEST through a temporary file and
# a rename (a running program keeps its old inode); sets CHANGED when DEST
# was missing or different.
install_file() {
	local src=$1 dest=$2 mode=$3 tmp
	if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
		chmod "$mode" "$dest"
		return 0
	fi
	tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
	install -m "$mode" "$src" "$tmp"
	mv -f "$tmp" "$dest"
	log "installed $dest"
	CHANGED=1
}

install -d -m 0755 "$PREFIX/bin" "$CNI_BIN_DIR" /etc/cni/net.d "$CONFIG_DIR" "$UNIT_DIR"
for f in cri-shim cri-shim-monitor cri-shim-pause; do
	install_file "$BUILT/$f" "$PREFIX/bin/$f" 0755
done
install_file "$BUILT/cni-bridge" "$CNI_BIN_DIR/cni-bridge" 0755

CONFIG=$CONFIG_DIR/config.toml
if [[ ! -e $CONFIG ]]; then
	install -m 0644 "$SRC/deploy/config.toml" "$CONFIG"
	log "installed $CONFIG"
	CHANGED=1
elif ! cmp -s "$SRC/deploy/config.toml" "$CONFIG"; then
	log "kept $CONFIG (it differs from deploy/config.toml: compare them after an upgrade)"
fi
# A cni_bin_dir elsewhere than the config says would leave pods without their plugin.
if [[ $CNI_BIN_DIR != /opt/cni/bin ]] && ! grep -qE "^[[:space:]]*cni_bin_dir[[:space:]]*=.*$CNI_BIN_DIR" "$CONFIG"; then
	log "warning: cni-bridge went to $CNI_BIN_DIR: add it to cni_bin_dir in $CONFIG"
fi

# The unit, with ExecStart pointing at where the binaries went.
UNIT_TMP=$(mktemp)
trap 'rm -f "$UNIT_TMP"' EXIT
sed -e "s|/usr/local/bin/cri-shim |$PREFIX/bin/cri-shim |" "$SRC/deploy/cri-shim.service" >"$UNIT_TMP"
files_changed=$CHANGED
CHANGED=0
install_file "$UNIT_TMP" "$UNIT_DIR/cri-shim.service" 0644
UNIT_CHANGED=$CHANGED
if [[ $files_changed == 1 ]]; then CHANGED=1; fi

runtime=$(sed -n 's/^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONFIG" | tail -1)
if ! command -v "${runtime:-runc}" >/dev/null; then
	log "warning: the OCI runtime '${runtime:-runc}' ($CONFIG) is not on PATH: apt-get install -y ${runtime:-runc}"
fi
# cri-shim loads its AppArmor profile with apparmor_parser where the kernel has AppArmor on.
if [[ $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null) == Y ]] && ! command -v apparmor_parser >/dev/null; then
	log "warning: AppArmor is on but apparmor_parser is missing: apt-get install -y apparmor"
fi
for other in containerd crio; do
	if systemctl is-active --quiet "$other" 2>/dev/null; then
		log "warning: $other is running: stop it if it owns /etc/cni/net.d (deploy/README.md, section 2)"
	fi
done

if [[ ! -d /run/systemd/system ]]; then
	# Not booted with systemd (a chroot, an image build): enable offline.
	if command -v systemctl >/dev/null; then
		systemctl enable cri-shim >/dev/null 2>&1 || die "systemctl enable cri-shim failed"
		log "systemd is not running here: cri-shim is enabled, not started"
	else
		log "no systemd here: start $PREFIX/bin/cri-shim --config $CONFIG yourself"
	fi
	exit 0
fi

was_active=0
systemctl is-active --quiet cri-shim && was_active=1
# `systemctl daemon-reload && systemctl enable --now cri-shim`, with one
# reload instead of two (enable reloads too; each costs seconds on a slow
# machine) and none when neither the unit nor its enablement changed.
if ! systemctl is-enabled --quiet cri-shim 2>/dev/null; then
	systemctl enable --no-reload cri-shim
	UNIT_CHANGED=1
fi
if [[ $UNIT_CHANGED == 1 ]]; then systemctl daemon-reload; fi
if [[ $START == 0 ]]; then
	log "cri-shim is installed and enabled, not started (--no-start)"
	exit 0
fi
systemctl start cri-shim
if [[ $was_active == 1 && ($CHANGED == 1 || $UNIT_CHANGED == 1) ]]; then
	log "restarting cri-shim (new binaries or unit; containers keep running)"
	systemctl restart cri-shim
fi

# Ready when the unit is active and the CRI socket exists.
SOCK=$(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONFIG" | tail -1)
SOCK=${SOCK:-/run/cri-shim/cri-shim.sock}
for ((i = 0; i < 600; i++)); do
	if systemctl is-active --quiet cri-shim && [[ -S $SOCK ]]; then
		log "cri-shim is running: CRI socket unix://$SOCK"
		exit 0
	fi
	sleep 0.1
done
systemctl status --no-pager --lines 20 cri-shim >&2 || true
die "cri-shim did not come up within 60s (journalctl -u cri-shim)"
