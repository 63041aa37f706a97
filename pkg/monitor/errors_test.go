package monitor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// TestErrorKindsCrossTheSocket: the monitor's errors reach the client with
// their errdefs kind (they came back as plain text before, which cri-shim
// answered as Unknown).
func TestErrorKindsCrossTheSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "mon") // short: a unix socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := ensureDirs(dir); err != nil {
		t.Fatal(err)
	}
	// The request handling of a real Server, without a reaper or runc: none
	// of the calls below gets that far.
	s := &Server{dir: dir, containers: map[string]*container{"exited": {exited: true}, "live": {}},
		byPid: map[int]*container{}, subs: map[chan Exit]bool{}}
	l, err := net.Listen("unix", socketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go s.handle(conn)
		}
	}()
	c := &Client{Dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tc := range []struct {
		desc string
		call func() error
		want error
	}{
		{"reopen of an unknown container", func() error { return c.Reopen(ctx, "nope") }, errdefs.ErrNotFound},
		{"create with an ID that is a path", func() error {
			_, err := c.Create(ctx, CreateRequest{ID: "../x", Bundle: filepath.Join(dir, "b")})
			return err
		}, errdefs.ErrInvalidArgument},
		{"create of a container already monitored", func() error {
			_, err := c.Create(ctx, CreateRequest{ID: "live", Bundle: filepath.Join(dir, "b")})
			return err
		}, errdefs.ErrAlreadyExists},
		{"attach to an unknown container", func() error {
			_, err := c.Attach(ctx, "nope", AttachRequest{Stdout: true})
			return err
		}, errdefs.ErrNotFound},
		{"attach to an exited container", func() error {
			_, err := c.Attach(ctx, "exited", AttachRequest{Stdout: true})
			return err
		}, errdefs.ErrFailedPrecondition},
		{"an op this monitor does not know", func() error { return c.call(ctx, Request{Op: "teleport"}) }, errdefs.ErrNotImplemented},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want an error of kind %v", err, tc.want)
			}
		})
	}
}

func TestResponseErrorWithoutKind(t *testing.T) {
	err := responseError(Response{Error: "runc create failed: boom"})
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			t.Errorf("%v has kind %s, want none", err, k.name)
		}
	}
	if err.Error() != "container monitor: runc create failed: boom" {
		t.Errorf("text %q", err)
	}
}
