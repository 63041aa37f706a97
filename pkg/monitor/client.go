package monitor

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Client talks to the node's monitor.
type Client struct {
	// Dir is the monitor's directory (under cri-shim's --state).
	Dir string
	// Binary is the monitor executable Ensure starts.
	Binary string
	// Started, if set, is called with the pid of a monitor Ensure has just
	// started (the systemd driver moves it into a scope of its own).
	Started func(ctx context.Context, pid int)
}

// dial connects to the monitor, sends req and reads the response; the
// returned reader is positioned after it.
func (c *Client) dial(ctx context.Context, req Request) (net.Conn, *bufio.Reader, Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath(c.Dir))
	if err != nil {
		return nil, nil, Response{}, fmt.Errorf("connect to the container monitor: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	data, _ := json.Marshal(req)
	if _, err := conn.Write(append(data, '\n')); err != nil {
		conn.Close()
		return nil, nil, Response{}, fmt.Errorf("send to the container monitor: %w", err)
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, nil, Response{}, fmt.Errorf("read from the container monitor: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		conn.Close()
		return nil, nil, Response{}, fmt.Errorf("decode the container monitor's answer: %w", err)
	}
	if resp.Error != "" {
		conn.Close()
		return nil, nil, Response{}, responseError(resp)
	}
	conn.SetDeadline(time.Time{})
	return conn, r, resp, nil
}

func (c *Client) call(ctx context.Context, req Request) error {
	conn, _, _, err := c.dial(ctx, req)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Create has the monitor create (or, with Run, create and start) a
// container and returns the pid of its init process.
func (c *Client) Create(ctx context.Context, req CreateRequest) (int, error) {
	conn, _, resp, err := c.dial(ctx, Request{Op: "create", Create: &req})
	if err != nil {
		return 0, err
	}
	conn.Close()
	return resp.Pid, nil
}

// Reopen makes the monitor reopen a container's log file.
func (c *Client) Reopen(ctx context.Context, id string) error {
	return c.call(ctx, Request{Op: "reopen", ID: id})
}

// Forget drops a removed container from the monitor.
func (c *Client) Forget(ctx context.Context, id string) error {
	return c.call(ctx, Request{Op: "forget", ID: id})
}

// Ping checks that the monitor answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, Request{Op: "ping"})
}

// Events streams exits until ctx ends or the monitor goes away (the
// channel closes); the caller then rescans with ReadExit and resubscribes.
func (c *Client) Events(ctx context.Context) (<-chan Exit, error) {
	conn, r, _, err := c.dial(ctx, Request{Op: "events"})
	if err != nil {
		return nil, err
	}
	ch := make(chan Exit, 64)
	context.AfterFunc(ctx, func() { conn.Close() })
	go func() {
		defer close(ch)
		defer conn.Close()
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var e Exit
			if json.Unmarshal(line, &e) == nil {
				ch <- e
			}
		}
	}()
	return ch, nil
}

// ReadExit returns the recorded exit of a container, or nil.
func (c *Client) ReadExit(id string) (*Exit, error) { return ReadExit(c.Dir, id) }

// Ensure starts the monitor unless one already answers. The monitor runs
// in its own session so signals to cri-shim's process group do not reach
// it; cri-shim reaps it if it dies while cri-shim lives.
func (c *Client) Ensure(ctx context.Context) error {
	if c.Ping(ctx) == nil {
		return nil
	}
	// A cri-shim shutting down starts no monitor (its own would outlive it
	// with nobody to use it until the next start, which starts one anyway).
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("not starting the container monitor: %w", err)
	}
	if err := ensureDirs(c.Dir); err != nil {
		return err
	}
	logf, err := os.OpenFile(monitorLogPath(c.Dir), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.Binary, "--dir", c.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the container monitor %s: %w", c.Binary, err)
	}
	go cmd.Wait()
	if c.Started != nil {
		c.Started(ctx, cmd.Process.Pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Ping(ctx); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the container monitor did not come up (see %s)", monitorLogPath(c.Dir))
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for the container monitor to come up: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Stream is an attached container's I/O.
type Stream struct {
	conn net.Conn
	r    *bufio.Reader
}

// Attach connects to a running container's streams.
func (c *Client) Attach(ctx context.Context, id string, req AttachRequest) (*Stream, error) {
	conn, r, _, err := c.dial(ctx, Request{Op: "attach", ID: id, Attach: &req})
	if err != nil {
		return nil, err
	}
	return &Stream{conn: conn, r: r}, nil
}

// Copy moves output frames to stdout/stderr until the container's output
// ends or the stream is closed.
func (s *Stream) Copy(stdout, stderr io.Writer) error {
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(s.r, hdr); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrameBytes {
			return fmt.Errorf("attach frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(s.r, payload); err != nil {
			return err
		}
		var w io.Writer
		switch hdr[0] {
		case FrameStdout:
			w = stdout
		case FrameStderr:
			w = stderr
		case FrameExited:
			return nil
		}
		if w != nil {
			if _, err := w.Write(payload); err != nil {
				return err
			}
		}
	}
}

// WriteStdin sends input to the container.
func (s *Stream) WriteStdin(p []byte) error {
	_, err := s.conn.Write(encodeFrame(FrameStdin, p))
	return err
}

// CloseStdin tells the monitor this client's stdin ended.
func (s *Stream) CloseStdin() error {
	_, err := s.conn.Write(encodeFrame(FrameCloseIn, nil))
	return err
}

// Resize sets the container's terminal size.
func (s *Stream) Resize(width, height uint16) error {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, width)
	binary.BigEndian.PutUint16(b[2:], height)
	_, err := s.conn.Write(encodeFrame(FrameResize, b))
	return err
}

// Close ends the attach.
func (s *Stream) Close() error { return s.conn.Close() }

// CheckMountNamespace fails when the running monitor lives in another mount
// namespace than the caller: the netns pins and mounts cri-shim makes would
// be invisible to the runtime the monitor starts. That only happens when
// cri-shim is restarted inside a fresh private mount namespace (a sandbox
// or test harness); start it in the monitor's instead.
func (c *Client) CheckMountNamespace() error {
	data, err := os.ReadFile(monitorPidPath(c.Dir))
	if err != nil {
		return nil // an old monitor without a pid file: nothing to compare
	}
	pid := strings.TrimSpace(string(data))
	theirs, err1 := os.Readlink("/proc/" + pid + "/ns/mnt")
	ours, err2 := os.Readlink("/proc/self/ns/mnt")
	if err1 != nil || err2 != nil || theirs == ours {
		return nil
	}
	return fmt.Errorf("the container monitor (pid %s) runs in mount namespace %s, cri-shim in %s: start cri-shim in the monitor's (nsenter --mount=/proc/%s/ns/mnt)", pid, theirs, ours, pid)
}
