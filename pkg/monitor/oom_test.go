package monitor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOOMKills(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		files map[string]string
		want  int
	}{
		{"v2, no kill", map[string]string{"memory.events": "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\noom_group_kill 0\n"}, 0},
		{"v2, killed", map[string]string{"memory.events": "low 0\nhigh 0\nmax 9\noom 1\noom_kill 2\noom_group_kill 0\n"}, 2},
		{"v1, killed", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"}, 1},
		{"v1, no kill", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"}, 0},
		{"no memory controller", nil, 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := OOMKills(dir); got != tc.want {
				t.Errorf("OOMKills = %d, want %d", got, tc.want)
			}
		})
	}
	if got := OOMKills(""); got != 0 {
		t.Errorf("OOMKills(\"\") = %d", got)
	}
}

// TestOOMWatcher: a modification of memory.events that shows a kill marks
// the container, as the kernel's file notification would. inotify works on
// a regular file the same way, which is what the test uses.
func TestOOMWatcher(t *testing.T) {
	w := newOOMWatcher()
	if w.fd < 0 {
		t.Skip("no inotify")
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	if err := os.WriteFile(events, []byte("oom 0\noom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &container{rec: record{ID: "c1", CgroupDir: dir}}
	w.watch(c)
	if c.oomKilled.Load() {
		t.Fatal("marked before any kill")
	}
	// The cgroup then goes away (systemd removes an empty scope): the mark
	// must have been taken while the file was there.
	if err := os.WriteFile(events, []byte("oom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !c.oomKilled.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	os.Remove(events)
	if !c.oomKilled.Load() {
		t.Error("the OOM kill was not seen")
	}
	w.forget(c)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.byWd) != 0 {
		t.Errorf("watches left: %v", w.byWd)
	}
}

func TestRuntimeGlobalArgs(t *testing.T) {
	if got, want := runtimeGlobalArgs("/r", false), []string{"--root", "/r"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := runtimeGlobalArgs("/r", true), []string{"--root", "/r", "--systemd-cgroup"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseOOMKill(t *testing.T) {
	for _, tc := range []struct {
		record, want string
		ok           bool
	}{
		{"6,1404,75999222,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=cri-shim-e3.scope,mems_allowed=0,oom_memcg=/test.slice/cri-shim-e3.scope,task_memcg=/test.slice/cri-shim-e3.scope,task=dd,pid=1364,uid=0\n",
			"/test.slice/cri-shim-e3.scope", true},
		{"6,88,123,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=tail,pid=7,uid=0\n SUBSYSTEM=memory\n",
			"/kubepods/pod1/c1", true},
		{"3,1405,76000105,-;Memory cgroup out of memory: Killed process 1364 (dd) total-vm:23756kB\n", "", false},
		{"6,1,2,-;oom-kill:constraint=CONSTRAINT_NONE,task=x,pid=1\n", "", false},
		{"no separator", "", false},
	} {
		got, ok := parseOOMKill([]byte(tc.record))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseOOMKill(%q) = %q, %v, want %q, %v", tc.record, got, ok, tc.want, tc.ok)
		}
	}
}

func TestKernelCgroupPath(t *testing.T) {
	for dir, want := range map[string]string{
		"/sys/fs/cgroup/test.slice/cri-shim-1.scope": "/test.slice/cri-shim-1.scope",
		"/sys/fs/cgroup/memory/kubepods/pod1/c1":     "/kubepods/pod1/c1",
		"/sys/fs/cgroup/memory.slice/x":              "/memory.slice/x",
		"/elsewhere/c1":                              "",
		"/sys/fs/cgroupfoo/x":                        "",
	} {
		if got := kernelCgroupPath(dir); got != want {
			t.Errorf("kernelCgroupPath(%q) = %q, want %q", dir, got, want)
		}
	}
}

func TestRuntimeCreateArgv(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		req     CreateRequest
		console string
		want    string
		op      string
	}{
		{"create, cgroupfs", CreateRequest{ID: "c1", Bundle: "/b", RuntimeBinary: "runc", RuntimeRoot: "/r"}, "",
			"runc --root /r --log /l --log-format json create --bundle /b --pid-file /p c1", "create"},
		{"run detached, systemd, terminal", CreateRequest{ID: "p1", Bundle: "/b", RuntimeBinary: "crun", RuntimeRoot: "/r", Run: true, SystemdCgroup: true}, "/c.sock",
			"crun --root /r --systemd-cgroup --log /l --log-format json run --detach --bundle /b --pid-file /p --console-socket /c.sock p1", "run"},
	} {
		argv, op := runtimeCreateArgv(&tc.req, "/l", "/p", tc.console)
		if got := strings.Join(argv, " "); got != tc.want || op != tc.op {
			t.Errorf("%s:\n got %s (%s)\nwant %s (%s)", tc.desc, got, op, tc.want, tc.op)
		}
	}
}
