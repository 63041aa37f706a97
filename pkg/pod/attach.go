package pod

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/monitor"
	"github.com/cri-shim/cri-shim/pkg/netns"
)

// Attach connects the caller to a running container's stdio through the
// monitor, until the container's output ends or ctx ends.
func (m *Manager) Attach(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) error {
	c, ok := m.containers.get(id)
	if !ok {
		return notFound("container", id)
	}
	if c.State != ContainerRunning {
		return fmt.Errorf("container %s is %s, not running: %w", id, c.State, errdefs.ErrFailedPrecondition)
	}
	tty := c.Config.GetTty()
	req := monitor.AttachRequest{Stdin: stdin != nil && c.Config.GetStdin(), Stdout: stdout != nil, Stderr: stderr != nil && !tty}
	stream, err := m.monitor.Attach(ctx, id, req)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", id, err)
	}
	defer stream.Close()
	stop := context.AfterFunc(ctx, func() { stream.Close() })
	defer stop()
	if req.Stdin {
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := stdin.Read(buf)
				if n > 0 && stream.WriteStdin(buf[:n]) != nil {
					return
				}
				if err != nil {
					stream.CloseStdin()
					return
				}
			}
		}()
	}
	if resize != nil && tty {
		go func() {
			for sz := range resize {
				if stream.Resize(sz.Width, sz.Height) != nil {
					return
				}
			}
		}()
	}
	if err := stream.Copy(nonNil(stdout), nonNil(stderr)); err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to %s: %w", id, err)
	}
	return nil
}

// PortForward connects stream to port on the pod's loopback, inside its
// network namespace.
func (m *Manager) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	sb, ok := m.sandboxes.get(podID)
	if !ok {
		return notFound("pod sandbox", podID)
	}
	if sb.State != SandboxReady {
		return fmt.Errorf("pod sandbox %s is not ready: %w", podID, errdefs.ErrFailedPrecondition)
	}
	dial := func() (net.Conn, error) {
		var d net.Dialer
		d.Timeout = 10 * time.Second
		conn, err := d.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			if c6, err6 := d.DialContext(ctx, "tcp6", fmt.Sprintf("[::1]:%d", port)); err6 == nil {
				return c6, nil
			}
		}
		return conn, err
	}
	var conn net.Conn
	var err error
	if sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		conn, err = dial()
	} else {
		// The socket is created inside the pod's netns and keeps working
		// from any thread afterwards.
		err = netns.Do(sb.NetNS, func() error {
			var derr error
			conn, derr = dial()
			return derr
		})
	}
	if err != nil {
		return fmt.Errorf("port-forward to port %d of pod %s: %w", port, podID, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(stream, conn)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
