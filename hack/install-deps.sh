#!/usr/bin/env bash
# install-deps.sh installs the Debian packages the build, the tests and the
# node sandbox need. Idempotent: it only calls apt when something is missing.
#
#   hack/install-deps.sh            runtime + test deps (runc, reference CNI plugins, busybox)
#   hack/install-deps.sh --reference  also Debian's containerd (the benchmark/conformance reference)
set -euo pipefail

# apparmor: apparmor_parser, so the tests compile cri-shim's default profile
# (this kernel has AppArmor off: nothing is loaded). criu: CheckpointContainer
# (Debian 12's 3.17 fails `criu check` on 6.x kernels; the tests expect the
# FailedPrecondition that gives here and a real dump in the VM).
# libseccomp-dev, pkg-config: hack/install-runc.sh builds a runc that can
# make idmapped mounts (user namespaces); Debian's runc stays as fallback.
pkgs=(runc containernetworking-plugins busybox iproute2 nftables util-linux kmod procps gcc libc6-dev apparmor criu
	libseccomp-dev pkg-config)
if [[ "${1:-}" == "--reference" ]]; then
	pkgs+=(containerd)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install_runc() { "$(dirname "${BASH_SOURCE[0]}")/install-runc.sh"; }
if [[ ${#missing[@]} -eq 0 ]]; then
	install_runc
	exit 0
fi

# Package scripts must not start daemons (containerd) on this machine: a
# policy-rc.d that answers 101 makes invoke-rc.d skip them. Removed on exit
# only if we created it.
created_policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	created_policy=1
fi
# The trap must succeed: its status becomes the script's.
cleanup() { if [[ -n "$created_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# Another apt (unattended upgrades, a second script) may hold the dpkg
# lock: wait for it instead of failing at once, and say what failed.
apt_opts=(-o DPkg::Lock::Timeout=600)
if ! apt-get "${apt_opts[@]}" update -qq; then
	echo "install-deps.sh: apt-get update failed (see above)" >&2
	exit 1
fi
if ! apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
	echo "install-deps.sh: apt-get install ${missing[*]} failed (see above)" >&2
	exit 1
fi

install_runc
