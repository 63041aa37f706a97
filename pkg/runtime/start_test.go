package runtime

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeInit stands in for a created container's init: it blocks opening the
// exec FIFO for writing, writes one byte and exits.
func fakeInit(t *testing.T, fifo string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "printf 0 > "+fifo)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestStartCreatedThroughTheFifo(t *testing.T) {
	root := t.TempDir()
	r := &Runc{Root: root, Binary: "/bin/false"} // the runtime binary must not be needed
	fifo := filepath.Join(root, "c1", execFifo)
	os.MkdirAll(filepath.Dir(fifo), 0o700)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	init := fakeInit(t, fifo)
	if err := r.StartCreated(context.Background(), "c1", init.Process.Pid, 0); err != nil {
		t.Fatal(err)
	}
	if err := init.Wait(); err != nil {
		t.Fatalf("the init did not finish its write: %v", err)
	}
	if _, err := os.Lstat(fifo); !os.IsNotExist(err) {
		t.Errorf("the FIFO is still there: the runtime would report the container created: %v", err)
	}
}

func TestStartCreatedDeadInit(t *testing.T) {
	root := t.TempDir()
	r := &Runc{Root: root, Binary: "/bin/false"}
	fifo := filepath.Join(root, "c2", execFifo)
	os.MkdirAll(filepath.Dir(fifo), 0o700)
	unix.Mkfifo(fifo, 0o600)
	dead := exec.Command("true")
	dead.Run()
	start := time.Now()
	err := r.StartCreated(context.Background(), "c2", dead.Process.Pid, 12345)
	if err == nil || !strings.Contains(err.Error(), "init process is gone") || time.Since(start) > 2*time.Second {
		t.Fatalf("StartCreated with a dead init = %v after %v", err, time.Since(start))
	}
}

func TestStartCreatedFallsBackToTheRuntime(t *testing.T) {
	r := &Runc{Root: t.TempDir(), Binary: "/bin/false"}
	// No FIFO: the runtime's own start runs (and /bin/false fails).
	if err := r.StartCreated(context.Background(), "c3", 1, 0); err == nil {
		t.Fatal("want the runtime's failure")
	}
}
