package cri

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"k8s.io/cri-streaming/pkg/streaming"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/cri-shim/cri-shim/pkg/pod"
)

// NewStreamingServer returns the HTTP server kubelet and crictl connect to
// for exec, attach and port-forward (the CRI returns URLs to it).
func NewStreamingServer(addr string, pods *pod.Manager) (streaming.Server, error) {
	// Bind first so a ":0" port is known for the URLs.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	l.Close()
	cfg := streaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.StreamIdleTimeout = 4 * time.Hour
	return streaming.NewServer(cfg, streamRuntime{pods})
}

// streamRuntime adapts pkg/pod to the streaming server.
type streamRuntime struct{ pods *pod.Manager }

func resizeChan(in <-chan remotecommandserver.TerminalSize) <-chan pod.TerminalSize {
	if in == nil {
		return nil
	}
	out := make(chan pod.TerminalSize)
	go func() {
		defer close(out)
		for sz := range in {
			out <- pod.TerminalSize{Width: sz.Width, Height: sz.Height}
		}
	}()
	return out
}

func (r streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	o := pod.ExecOptions{Cmd: cmd, Tty: tty, Resize: resizeChan(resize)}
	if in != nil {
		o.Stdin = in
	}
	if out != nil {
		o.Stdout = out
	}
	if errw != nil {
		o.Stderr = errw
	}
	code, err := r.pods.Exec(ctx, containerID, o)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCodeError(code)
	}
	return nil
}

func (r streamRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	var stdout, stderr io.Writer
	if out != nil {
		stdout = out
	}
	if errw != nil {
		stderr = errw
	}
	return r.pods.Attach(ctx, containerID, in, stdout, stderr, resizeChan(resize))
}

func (r streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	return r.pods.PortForward(ctx, podSandboxID, port, stream)
}

// exitCodeError carries a non-zero exit code to the remote command
// protocol (it reports it to the client as the exit status).
type exitCodeError int

func (e exitCodeError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", int(e))
}
func (e exitCodeError) String() string  { return e.Error() }
func (e exitCodeError) Exited() bool    { return true }
func (e exitCodeError) ExitStatus() int { return int(e) }
