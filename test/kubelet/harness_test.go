package kubelet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// The node network: a bridge in the hub namespace, one veth per node.
const (
	hubIP        = "10.100.0.1"
	nodeNetBits  = 24
	registryAddr = hubIP + ":5000"
	clusterCIDR  = "10.244.0.0/16"
	serviceCIDR  = "10.96.0.0/16"
)

// env is one test's world: a temp directory, the hub namespace (bridge,
// registry, optionally the control plane), nodes, and every process started,
// all removed by its cleanup.
type env struct {
	t           *testing.T
	name        string // the test's
	cleanupOnce sync.Once
	id          string
	dir         string // everything on disk
	shm         string // etcd's data (tmpfs: etcd 3.4 fsyncs every write)
	hubNS       string
	cgroupRoot  string // "/kubelet-e2e-<id>": every node's cgroupRoot is below

	mu    sync.Mutex
	procs []*proc
	nodes []*node
	cp    *controlPlane
}

var envSeq int

func newEnv(t *testing.T) *env {
	t.Helper()
	requireE2E(t)
	// Every name this run makes starts with kubelet-e2e-<run>- so that
	// hack/kubelet-e2e.sh can find what a killed test left behind.
	envSeq++
	id := fmt.Sprintf("%s-%d", envOr("KUBELET_E2E_RUN_ID", strconv.Itoa(os.Getpid())), envSeq)
	dir, err := os.MkdirTemp("", "kubelet-e2e-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	e := &env{t: t, dir: dir, id: id}
	e.cgroupRoot = "/kubelet-e2e-" + e.id
	e.hubNS = filepath.Join(dir, "netns", "hub")
	e.name = t.Name()
	liveEnvs.Store(e, true)
	t.Cleanup(func() {
		e.cleanupOnce.Do(func() {
			e.cleanup(func(format string, args ...any) { t.Errorf(format, args...) })
		})
		liveEnvs.Delete(e)
	})
	for _, d := range []string{"logs", "netns"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	if err := netns.New(e.hubNS); err != nil {
		t.Fatal(err)
	}
	if err := e.setupHub(); err != nil {
		t.Fatalf("hub network: %v", err)
	}
	e.startRegistry()
	return e
}

// setupHub makes the node network's bridge with the hub's address. The hub
// does not forward: nodes talk to each other on the bridge.
func (e *env) setupHub() error {
	h, err := handleAt(e.hubNS)
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", MTU: 1500}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge: %w", err)
	}
	addr, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", hubIP, nodeNetBits))
	if err := h.AddrAdd(br, addr); err != nil {
		return err
	}
	if err := h.LinkSetUp(br); err != nil {
		return err
	}
	return writeSysctlIn(e.hubNS, "net/ipv4/ip_forward", "0")
}

func handleAt(path string) (*netlink.Handle, error) {
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// writeSysctlIn writes a /proc/sys/net file of the namespace at nsPath
// (those files are per network namespace: the machine's are untouched).
func writeSysctlIn(nsPath, key, value string) error {
	if !strings.HasPrefix(key, "net/") {
		return fmt.Errorf("%s is not a per-namespace sysctl", key)
	}
	return netns.Do(nsPath, func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644) })
}

func (e *env) startRegistry() {
	ready := filepath.Join(e.dir, "registry.ready")
	args := []string{"nsenter", "--net=" + e.hubNS, filepath.Join(config.shimBin, "testimages"), "serve",
		"--addr", registryAddr, "--ready-file", ready}
	if config.imageCache != "" {
		args = append(args, "--cache-dir", config.imageCache)
	}
	p := e.start("registry", args, nil)
	e.waitFor(3*time.Minute, "the test registry", p, func() bool { _, err := os.Stat(ready); return err == nil })
}

// ---------------------------------------------------------------------------
// Processes

// proc is a process the test started (directly, or through nsenter and
// unshare, which exec it: the PID is the daemon's).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs argv with its output in logs/<name>.log.
func (e *env) start(name string, argv []string, extraEnv []string) *proc {
	e.t.Helper()
	logPath := filepath.Join(e.dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), extraEnv...)
	// Its own process group: a Ctrl-C of `go test` reaches the test, which
	// then stops everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	if p == nil || !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last lines of the process's log, for failure messages.
func (p *proc) tail(n int) string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds; it fails the test if p (when given)
// exits first or the time runs out.
func (e *env) waitFor(d time.Duration, what string, p *proc, cond func() bool) {
	e.t.Helper()
	waitFor(e.t, d, what, p, cond)
}

// waitFor is env.waitFor for a subtest's t.
func waitFor(t *testing.T, d time.Duration, what string, p *proc, cond func() bool) {
	t.Helper()
	if err := poll(d, p, cond); err != nil {
		msg := fmt.Sprintf("%s: %v", what, err)
		if p != nil {
			msg += fmt.Sprintf("\n--- last lines of %s:\n%s", p.log, p.tail(30))
		}
		t.Fatal(msg)
	}
}

func poll(d time.Duration, p *proc, cond func() bool) error {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return nil
		}
		if p != nil && !p.alive() {
			return fmt.Errorf("%s exited (%v)", p.name, p.cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Dialing into namespaces: sockets made inside stay there.

func dialIn(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var derr error
		if err := netns.Do(nsPath, func() error {
			c, derr = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
			return nil
		}); err != nil {
			return nil, err
		}
		return c, derr
	}
}

// httpIn is an HTTP client whose connections start in the namespace.
func httpIn(nsPath string) *http.Client {
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext:     dialIn(nsPath),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // kubelet's self-signed serving cert
	}}
}

func httpGet(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// ---------------------------------------------------------------------------
// cgroups: every node gets <cgroupRoot>/<node> in every hierarchy.

func cgroupMounts() []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		// Fields after " - ": fstype, source, options.
		for i, x := range f {
			if x == "-" && i+1 < len(f) && (f[i+1] == "cgroup" || f[i+1] == "cgroup2") && !seen[f[4]] {
				seen[f[4]] = true
				out = append(out, f[4])
			}
		}
	}
	sort.Strings(out)
	return out
}

// makeCgroup creates rel (like /kubelet-e2e-1/node-a) in every hierarchy;
// in cpuset each new level gets its parent's cpus and mems, or nothing
// could join it.
func makeCgroup(rel string) error {
	for _, m := range cgroupMounts() {
		parts := strings.Split(strings.Trim(rel, "/"), "/")
		cur := m
		for _, p := range parts {
			parent := cur
			cur = filepath.Join(cur, p)
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			if filepath.Base(m) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if v, _ := os.ReadFile(filepath.Join(cur, f)); len(bytes.TrimSpace(v)) > 0 {
						continue
					}
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(cur, f), v, 0o644); err != nil {
						return fmt.Errorf("%s/%s: %w", cur, f, err)
					}
				}
			}
		}
	}
	return nil
}

// removeCgroupTree removes rel and everything below in every hierarchy,
// deepest first. Processes still inside are reported (they are ours: the
// tree is this test's) and killed by PID.
func removeCgroupTree(rel string) (leftovers []string) {
	for _, m := range cgroupMounts() {
		root := filepath.Join(m, rel)
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs")); len(bytes.TrimSpace(procs)) > 0 {
				leftovers = append(leftovers, fmt.Sprintf("processes %s in cgroup %s", strings.Fields(string(procs)), d))
				for _, pid := range strings.Fields(string(procs)) {
					if n, err := strconv.Atoi(pid); err == nil {
						syscall.Kill(n, syscall.SIGKILL)
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
			var err error
			for i := 0; i < 20; i++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				leftovers = append(leftovers, fmt.Sprintf("cgroup %s: %v", d, err))
			}
		}
	}
	return leftovers
}

// ---------------------------------------------------------------------------
// Teardown

// pidsInMntNS lists the processes whose mount namespace is link (like
// mnt:[4026532...]).
func pidsInMntNS(link string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && l == link {
			out = append(out, pid)
		}
	}
	return out
}

// liveEnvs are the envs not yet cleaned up, for cleanupOnSignal.
var liveEnvs sync.Map

// cleanupOnSignal makes SIGINT and SIGTERM remove every env before the
// test binary exits (t.Cleanup functions would not run).
func cleanupOnSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-c
		fmt.Fprintf(os.Stderr, "test/kubelet: %v: removing every node and namespace, then exiting\n", sig)
		liveEnvs.Range(func(k, _ any) bool {
			e := k.(*env)
			e.cleanupOnce.Do(func() {
				e.cleanup(func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) })
			})
			return true
		})
		os.Exit(2)
	}()
}

// cleanup removes everything of the env; report gets what was left behind.
func (e *env) cleanup(report func(format string, args ...any)) {
	var leftovers []string
	e.mu.Lock()
	nodes := append([]*node(nil), e.nodes...)
	e.mu.Unlock()
	for i := len(nodes) - 1; i >= 0; i-- {
		leftovers = append(leftovers, nodes[i].teardown()...)
	}
	if e.cp != nil {
		e.cp.stop()
	}
	// Anything else, newest first.
	e.mu.Lock()
	procs := append([]*proc(nil), e.procs...)
	e.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	for _, n := range nodes {
		if err := netns.Remove(n.ns); err != nil {
			leftovers = append(leftovers, err.Error())
		}
	}
	if err := netns.Remove(e.hubNS); err != nil {
		leftovers = append(leftovers, err.Error())
	}
	leftovers = append(leftovers, removeCgroupTree(e.cgroupRoot)...)
	if config.artifacts != "" {
		dst := filepath.Join(config.artifacts, e.name)
		os.MkdirAll(dst, 0o755)
		exec.Command("cp", "-r", filepath.Join(e.dir, "logs"), dst).Run()
		for _, n := range nodes {
			os.MkdirAll(filepath.Join(dst, n.name), 0o755)
			exec.Command("sh", "-c", fmt.Sprintf("cp -r %s/logs %s/kubelet.yaml %s/net.d %s/ 2>/dev/null", n.dir, n.dir, n.dir, filepath.Join(dst, n.name))).Run()
		}
	}
	// Mounts of ours in this (the machine's) mount namespace: only the netns pins.
	if data, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(data, []byte(e.dir)) {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, e.dir) {
				leftovers = append(leftovers, "mount: "+line)
			}
		}
	}
	if len(leftovers) > 0 {
		report("LEFTOVER after the test (cleaned up where possible):\n  %s", strings.Join(leftovers, "\n  "))
	}
	if os.Getenv("KUBELET_E2E_KEEP") == "1" {
		report("kept %s (KUBELET_E2E_KEEP=1)", e.dir)
		return
	}
	exec.Command("rm", "-rf", "--one-file-system", e.dir).Run()
	if e.shm != "" {
		os.RemoveAll(e.shm)
	}
}
