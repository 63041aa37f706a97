package pod

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillDescendantOf: a process is killed only when it descends from the
// given ancestor, however many processes stand in between (runc and its
// init helpers stand between an exec's waiter and the process for a while).
func TestKillDescendantOf(t *testing.T) {
	sh := exec.Command("sh", "-c", "sleep 300 & echo $!; wait")
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.Process.Kill(); sh.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	sleep, _ := strconv.Atoi(strings.TrimSpace(line))
	if parentPid(sleep) != sh.Process.Pid {
		t.Fatalf("sleep %d: parent %d, want sh %d", sleep, parentPid(sleep), sh.Process.Pid)
	}
	if killDescendantOf(sleep, 1_000_000_000) {
		t.Error("killed a process that does not descend from the ancestor")
	}
	if syscall.Kill(sleep, 0) != nil {
		t.Fatal("the process died anyway")
	}
	// Its grandparent is this test: the sh stands in between.
	if !killDescendantOf(sleep, os.Getpid()) {
		t.Fatal("did not kill a grandchild")
	}
	done := make(chan struct{})
	go func() { sh.Wait(); close(done) }()
	select {
	case <-done: // sh's wait returned: the sleep is gone
	case <-time.After(10 * time.Second):
		t.Fatal("the grandchild still runs")
	}
	if killDescendantOf(sleep, os.Getpid()) {
		t.Error("a reaped pid was killed again")
	}
}
