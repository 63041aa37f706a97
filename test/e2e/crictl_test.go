package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// crictlPath returns crictl v1.36.0, building it (hack/lib/cri-tools.sh,
// cached) when absent.
func crictlPath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CRITEST_TOOLS_DIR")
	if dir == "" {
		dir = "/var/cache/cri-shim-dev/tools/cri-tools-v1.36.0"
	}
	p := filepath.Join(dir, "crictl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	build := exec.Command("bash", "-c", `log() { echo "$*" >&2; }; die() { log "$*"; exit 1; }; source hack/lib/cri-tools.sh; build_tools`)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build crictl: %v\n%s", err, out)
	}
	return p
}

// crictl runs crictl against the runtime, from inside its node namespace
// (the streaming server listens on the node's loopback).
type crictl struct {
	t    *testing.T
	r    *testRuntime
	bin  string
	conf string
}

func newCrictl(t *testing.T, r *testRuntime) *crictl {
	conf := filepath.Join(t.TempDir(), "crictl.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", r.sock, r.sock)), 0o644)
	return &crictl{t: t, r: r, bin: crictlPath(t), conf: conf}
}

func (c *crictl) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.r.ns, c.bin}, args...)...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE="+c.conf)
	return cmd
}

func (c *crictl) run(args ...string) string {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.cmd(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("crictl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// TestCrictlWalk debugs a pod the way a user does, with crictl, and checks
// what each command shows.
func TestCrictlWalk(t *testing.T) {
	r := sharedRuntime(t)
	c := newCrictl(t, r)
	dir := t.TempDir()
	pod := r.podConfig("walk")
	podJSON := fmt.Sprintf(`{"metadata":{"name":"walk","namespace":"e2e","uid":%q},"hostname":"walk","log_directory":%q,
		"port_mappings":[{"container_port":80,"host_port":18081}],"linux":{}}`, pod.Metadata.Uid, pod.LogDirectory)
	// pid CONTAINER (1): the zero value, POD, would share the pause's PID namespace.
	ctrJSON := `{"metadata":{"name":"web"},"image":{"image":"` + nginxImage + `"},"log_path":"web.log",
		"linux":{"security_context":{"namespace_options":{"pid":1}}}}`
	os.WriteFile(filepath.Join(dir, "pod.json"), []byte(podJSON), 0o644)
	os.WriteFile(filepath.Join(dir, "ctr.json"), []byte(ctrJSON), 0o644)

	c.run("pull", nginxImage)
	podID := c.run("runp", filepath.Join(dir, "pod.json"))
	t.Cleanup(func() { c.cmd("rmp", "-f", podID).Run() })
	ctrID := c.run("create", podID, filepath.Join(dir, "ctr.json"), filepath.Join(dir, "pod.json"))
	c.run("start", ctrID)

	if ps := c.run("ps", "--pod", podID); !strings.Contains(ps, ctrID[:13]) || !strings.Contains(ps, "Running") {
		t.Errorf("crictl ps:\n%s", ps)
	}
	if out := c.run("exec", ctrID, "hostname"); out != "walk" {
		t.Errorf("crictl exec hostname = %q", out)
	}
	if out := c.run("exec", ctrID, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.Contains(out, "master process") {
		t.Errorf("crictl exec: the container's init is %q", out)
	}

	// exec -it needs a terminal on crictl's side: give it one.
	master, slave, err := runtime.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	it := c.cmd("exec", "-it", ctrID, "sh")
	it.Stdin, it.Stdout, it.Stderr = slave, slave, slave
	it.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := it.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	fmt.Fprintf(master, "tty && echo tty-$((6*7))\nexit\n")
	var tty bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&tty, master); close(done) }()
	waited := make(chan error, 1)
	go func() { waited <- it.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("crictl exec -it: %v", err)
		}
	case <-time.After(30 * time.Second):
		it.Process.Kill()
		t.Errorf("crictl exec -it did not finish")
	}
	master.Close()
	<-done
	if !strings.Contains(tty.String(), "tty-42") || !strings.Contains(tty.String(), "/dev/pts/") {
		t.Errorf("crictl exec -it output: %q", tty.String())
	}

	// logs: nginx-like server logs each request.
	if got, err := r.inNode("wget", "-qO-", "-T", "5", "http://127.0.0.1:18081/"); err != nil {
		t.Errorf("hostPort 18081 on the node's loopback: %v: %s", err, got)
	}
	var logs string
	waitFor(10*time.Second, func() bool { logs = c.run("logs", ctrID); return strings.Contains(logs, "GET /") })
	if !strings.Contains(logs, "GET /") {
		t.Errorf("crictl logs:\n%s", logs)
	}

	// port-forward: crictl listens on the node's loopback and forwards
	// into the pod's netns.
	pf := c.cmd("port-forward", podID, "18082:80")
	var pfOut bytes.Buffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	var body string
	waitFor(15*time.Second, func() bool {
		out, err := r.inNode("wget", "-qO-", "-T", "2", "http://127.0.0.1:18082/")
		body = out
		return err == nil
	})
	pf.Process.Kill()
	pf.Wait()
	if body == "" {
		t.Errorf("crictl port-forward: nothing through 127.0.0.1:18082 (%s)", pfOut.String())
	}

	stats := c.run("stats", "-o", "json", ctrID)
	var st struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(stats), &st); err != nil || len(st.Stats) != 1 || st.Stats[0].Memory.WorkingSetBytes.Value == "" || st.Stats[0].Memory.WorkingSetBytes.Value == "0" {
		t.Errorf("crictl stats: %v\n%s", err, stats)
	}

	var inspect struct {
		Status struct {
			State   string
			Network struct{ IP string }
		}
	}
	out := c.run("inspectp", podID)
	if err := json.Unmarshal([]byte(out), &inspect); err != nil || inspect.Status.State != "SANDBOX_READY" || !strings.HasPrefix(inspect.Status.Network.IP, "10.88.") {
		t.Errorf("crictl inspectp: %v %+v", err, inspect)
	}

	c.run("stopp", podID)
	if out := c.run("pods", "--id", podID, "-q", "--state", "NotReady"); out != podID {
		t.Errorf("after stopp the pod is not NotReady: %q", out)
	}
	c.run("rmp", podID)
	if out := c.run("pods", "-q", "--id", podID); out != "" {
		t.Errorf("after rmp the pod is still listed: %q", out)
	}
	if l := r.leaks(podID); len(l) > 0 {
		t.Errorf("left after rmp: %v", l)
	}
}
