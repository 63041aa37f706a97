# shellcheck shell=bash
# lib-node.sh: the node setup the guest scripts share (sourced; needs SRC,
# OUT, TOOLS, log and die): the test
# registry in the VM, hosts.toml mirrors to it, the cni-bridge conflist and
# the loopback plugin, then a restart of cri-shim to pick them up, as a user
# configures a node. Sets SOCK; stop_registry ends the registry.

REGISTRY_ADDR=127.0.0.1:5000
MIRRORED_HOSTS=(registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io)
CONFIG=/etc/cri-shim/config.toml

# config_value KEY DEFAULT: a string value of cri-shim's config file.
config_value() {
	local v
	v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$CONFIG" 2>/dev/null | tail -1)
	echo "${v:-$2}"
}

# install_tools_runc: /tools/runc/runc (hack/install-runc.sh's runc 1.5.3)
# as /usr/local/sbin/runc, as deploy/README.md tells a user who wants user
# namespaces (Debian 13's runc 1.1.15 cannot idmap mounts). Before
# node_setup, which restarts cri-shim.
install_tools_runc() {
	[[ -x $TOOLS/runc/runc ]] || die "--install-runc: no $TOOLS/runc/runc"
	install -m 0755 "$TOOLS/runc/runc" /usr/local/sbin/runc
	log "installed $(/usr/local/sbin/runc --version | head -1) as /usr/local/sbin/runc"
}

REGISTRY_PID=""
stop_registry() {
	[[ -n $REGISTRY_PID ]] && kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
	return 0
}

# wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "$what not ready after ${secs}s"
}

node_setup() {
	SOCK=$(config_value listen /run/cri-shim/cri-shim.sock)
	CERTS_DIR=$(config_value registry_config_dir /etc/cri-shim/certs.d)
	CNI_CONF_DIR=$(config_value cni_conf_dir /etc/cni/net.d)
	CNI_BIN_DIR=$(config_value cni_bin_dir /opt/cni/bin)
	CNI_BIN_DIR=${CNI_BIN_DIR%%:*}

	log "starting the test registry on $REGISTRY_ADDR (images from this VM's busybox; log: $OUT/registry.log)"
	rm -f /run/testimages.ready
	"$TOOLS/bin/testimages" serve --addr "$REGISTRY_ADDR" --ready-file /run/testimages.ready \
		--cache-dir "$TOOLS/testimages-cache" --go "$TOOLS/testimages-go" --busybox /bin/busybox \
		>"$OUT/registry.log" 2>&1 &
	REGISTRY_PID=$!
	for ((i = 0; i < 1500; i++)); do
		[[ -s /run/testimages.ready ]] && break
		kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$OUT/registry.log" >&2; die "the test registry exited"; }
		sleep 0.2
	done
	[[ -s /run/testimages.ready ]] || die "the test registry is not ready after 300s"

	log "mirrors in $CERTS_DIR, the cni-bridge conflist in $CNI_CONF_DIR, loopback in $CNI_BIN_DIR"
	for host in "${MIRRORED_HOSTS[@]}"; do
		mkdir -p "$CERTS_DIR/$host"
		# As hack/critest.sh writes them for cri-shim: the upstream server, with
		# the local registry as its mirror.
		printf 'server = "https://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
			"$host" "$REGISTRY_ADDR" >"$CERTS_DIR/$host/hosts.toml"
	done
	mkdir -p "$CNI_CONF_DIR" "$CNI_BIN_DIR"
	# dataDir becomes /var/lib/cni-bridge, the plugin's default.
	sed -e 's|@TMP@|/var/lib|g' "$SRC/hack/critest/cri-shim-cni.conflist" >"$CNI_CONF_DIR/10-pods.conflist"
	cp "$CNI_CONF_DIR/10-pods.conflist" "$OUT/10-pods.conflist"
	# The reference plugins (containernetworking-plugins) as a node has them.
	[[ -e $CNI_BIN_DIR/loopback ]] || ln -s /usr/lib/cni/loopback "$CNI_BIN_DIR/loopback"

	log "restarting cri-shim to pick up the registry and CNI configuration"
	systemctl restart cri-shim
	wait_for 120 "cri-shim" crictl --runtime-endpoint "unix://$SOCK" --timeout 5s version
	crictl --runtime-endpoint "unix://$SOCK" version | sed 's/^/  /' >&2
	cat >/etc/crictl.yaml <<-EOF
	runtime-endpoint: unix://$SOCK
	image-endpoint: unix://$SOCK
	timeout: 60
	EOF
}

# install_kubelet DESCRIPTION EXTRA_CONFIG [KUBELET FLAG...]: kubelet as a
# systemd unit (not started) with what every guest node sets: the CRI
# endpoint (node_setup's SOCK), no API server authentication, the server
# on loopback, node name vm-node, and its DEFAULT cgroup settings (no
# failCgroupV1, no cgroupDriver: it takes the driver from cri-shim).
# EXTRA_CONFIG: more KubeletConfiguration lines, newline-separated.
install_kubelet() {
	local desc=$1 extra=$2
	shift 2
	mkdir -p /etc/kubernetes /var/lib/kubelet
	# kubelet gives pods the node's resolv.conf; the VM has no network, so no
	# lookup may leave it.
	[[ -s /etc/resolv.conf ]] || echo 'nameserver 127.0.0.1' >/etc/resolv.conf
	{
		printf '%s\n' \
			'apiVersion: kubelet.config.k8s.io/v1beta1' \
			'kind: KubeletConfiguration' \
			"containerRuntimeEndpoint: unix://$SOCK" \
			'authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}' \
			'authorization: {mode: AlwaysAllow}' \
			'address: 127.0.0.1'
		[[ -z $extra ]] || printf '%s\n' "$extra"
	} >/etc/kubernetes/kubelet.yaml
	printf '%s\n' \
		'[Unit]' \
		"Description=kubelet ($desc)" \
		'After=cri-shim.service' \
		'Wants=cri-shim.service' \
		'' \
		'[Service]' \
		"ExecStart=$TOOLS/bin/kubelet --config=/etc/kubernetes/kubelet.yaml --hostname-override=vm-node --v=2${*:+ $*}" \
		'Restart=always' \
		'RestartSec=2' >/etc/systemd/system/kubelet.service
	systemctl daemon-reload
}
