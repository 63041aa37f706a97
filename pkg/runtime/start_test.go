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

// fakeRuntime is a runtime binary named name that fails every command,
// recording its arguments in its directory's "called" file.
func fakeRuntime(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	script := "#!/bin/sh\necho \"$@\" >> " + filepath.Join(dir, "called") + "\nexit 1\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStartCreatedThroughTheFifo(t *testing.T) {
	root := t.TempDir()
	r := &Runc{Root: root, Binary: fakeRuntime(t, "runc")} // the runtime binary must not be needed
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
	r := &Runc{Root: root, Binary: fakeRuntime(t, "runc")}
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
	r := &Runc{Root: t.TempDir(), Binary: fakeRuntime(t, "runc")}
	// No FIFO: the runtime's own start runs (and the fake fails).
	if err := r.StartCreated(context.Background(), "c3", 1, 0); err == nil {
		t.Fatal("want the runtime's failure")
	}

	// Not runc (crun runs poststart hooks in its start): its own start,
	// even with a FIFO in place.
	root := t.TempDir()
	crun := fakeRuntime(t, "crun")
	r = &Runc{Root: root, Binary: crun}
	fifo := filepath.Join(root, "c4", execFifo)
	os.MkdirAll(filepath.Dir(fifo), 0o700)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.StartCreated(context.Background(), "c4", os.Getpid(), 0); err == nil {
		t.Fatal("want crun's (fake) failure")
	}
	called, _ := os.ReadFile(filepath.Join(filepath.Dir(crun), "called"))
	if !strings.Contains(string(called), "start c4") {
		t.Errorf("crun was called with %q, want its start", called)
	}
}
