package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPauseImage: with --pause-image, a sandbox's pause runs the image's
// program (pulled on first use) instead of the built-in one.
func TestPauseImage(t *testing.T) {
	r := ownRuntime(t, "pauseimg")
	const ref = "registry.k8s.io/pause:3.10"
	r.args = []string{"--pause-image", ref}
	r.kill9()
	r.restart(t)
	ctx := r.ctx(t)
	podID := r.runPod(t, r.podConfig("pimg"))
	st, err := r.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || st.GetImage() == nil {
		t.Fatalf("the pause image was not pulled: %v %v", st, err)
	}
	var rec struct {
		PausePid int `json:"pausePid"`
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "root", "sandboxes", podID, "sandbox.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil || rec.PausePid <= 0 {
		t.Fatalf("sandbox record: %v (pid %d)", err, rec.PausePid)
	}
	running, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", rec.PausePid))
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := os.ReadFile(filepath.Join(binDir, "cri-shim-pause"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(running, builtin) {
		t.Errorf("the pause process runs the built-in pause, not %s's", ref)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}

// TestUpdateRuntimeConfigPodCIDR: with a network whose subnet comes from the
// runtime (cni-bridge's ipRanges capability, as kubelet sets the node's
// podCIDR through UpdateRuntimeConfig), a pod cannot be networked before
// the CIDR arrives and gets an address from it after.
func TestUpdateRuntimeConfigPodCIDR(t *testing.T) {
	r := ownRuntime(t, "podcidr")
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"cni0",
"isDefaultGateway":true,"ipMasq":true,"mtu":1500,"dataDir":%q,"capabilities":{"portMappings":true,"ipRanges":true}}]}`,
		filepath.Join(r.dir, "cni-bridge"))
	if err := os.WriteFile(filepath.Join(r.dir, "net.d", "10-pods.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.kill9()
	r.restart(t)
	ctx := r.ctx(t)
	if _, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: r.podConfig("nocidr")}); err == nil {
		t.Fatal("RunPodSandbox succeeded with no subnet in the network config and no pod CIDR")
	}
	const cidr = "10.123.4.0/24"
	if _, err := r.rt.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}}); err != nil {
		t.Fatal(err)
	}
	podID := r.runPod(t, r.podConfig("cidr"))
	st, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(st.GetStatus().GetNetwork().GetIp())
	if err != nil || !netip.MustParsePrefix(cidr).Contains(ip) {
		t.Errorf("pod IP %q (%v), want one in %s", st.GetStatus().GetNetwork().GetIp(), err, cidr)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if leaks := r.leakcheck(t); len(leaks) > 0 {
		t.Errorf("leaks: %v", leaks)
	}
}
