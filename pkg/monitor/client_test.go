package monitor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEnsureStartsNoMonitorWhenCancelled: a cri-shim shutting down (its
// context cancelled) that loses its monitor must not start a new one, or the
// new monitor outlives it for nothing (found as leaked monitors after test
// teardowns that stopped both at once).
func TestEnsureStartsNoMonitorWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	// A stand-in monitor that only leaves a trace when it is run.
	bin := filepath.Join(dir, "fake-monitor")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Client{Dir: filepath.Join(dir, "monitor"), Binary: bin}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Ensure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ensure with a cancelled context: %v, want context.Canceled", err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("Ensure started the monitor although its context was cancelled")
	}

	// The same client with a live context does start it (the stand-in never
	// answers, so Ensure times out; a short deadline keeps the test quick).
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Ensure(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ensure with a monitor that never answers: %v, want context.DeadlineExceeded", err)
	}
	if err := waitForFile(marker, 5*time.Second); err != nil {
		t.Fatalf("Ensure with a live context did not start the monitor: %v", err)
	}
}

func waitForFile(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := os.Stat(path)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
