package e2e

import (
	"strings"
	"testing"
)

// TestRPCMetrics: cri-shim's --metrics-address serves each CRI call's
// latency histogram by method and code.
func TestRPCMetrics(t *testing.T) {
	r := ownRuntime(t, "rpcmetrics")
	r.args = []string{"--metrics-address", "127.0.0.1:9181"}
	r.kill9()
	r.restart(t)
	pod := r.podConfig("rpcmetrics")
	r.runPod(t, pod)
	out, err := r.inNode("wget", "-qO-", "-T", "5", "http://127.0.0.1:9181/metrics")
	if err != nil {
		t.Fatalf("scrape: %v: %s", err, out)
	}
	for _, want := range []string{
		`cri_shim_grpc_request_duration_seconds_count{code="OK",method="RunPodSandbox"} 1`,
		`cri_shim_grpc_request_duration_seconds_bucket{code="OK",method="RunPodSandbox",le="+Inf"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
