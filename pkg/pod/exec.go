package pod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/monitor"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// TerminalSize is a terminal's size in characters.
type TerminalSize struct{ Width, Height uint16 }

// ExecOptions describe a process to run in a container.
type ExecOptions struct {
	Cmd    []string
	Tty    bool
	Stdin  io.Reader // nil: no input
	Stdout io.Writer
	Stderr io.Writer // ignored with Tty (a terminal has one output)
	Resize <-chan TerminalSize
}

// Exec runs a process in a running container, as the container's user with
// its environment, and returns its exit code. When ctx ends the process is
// killed.
func (m *Manager) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	c, ok := m.containers.get(id)
	if !ok {
		return 0, notFound("container", id)
	}
	if c.State != ContainerRunning {
		return 0, fmt.Errorf("container %s is %s, not running: %w", id, c.State, errdefs.ErrFailedPrecondition)
	}
	if len(o.Cmd) == 0 {
		return 0, invalid("exec needs a command")
	}
	bundle := m.bundleDir(id)
	proc, err := execProcess(bundle, o)
	if err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp(bundle, "exec-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	procFile, pidFile := filepath.Join(tmp, "process.json"), filepath.Join(tmp, "pid")
	data, _ := json.Marshal(proc)
	if err := os.WriteFile(procFile, data, 0o600); err != nil {
		return 0, err
	}

	var consoleSock string
	var ln *net.UnixListener
	if o.Tty {
		consoleSock = filepath.Join(tmp, "console.sock")
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: consoleSock, Net: "unix"}); err != nil {
			return 0, err
		}
		defer ln.Close()
	}
	cmd := exec.Command(m.cfg.Runtime, append([]string{"--root", m.runc.Root}, m.runc.ExecArgs(id, procFile, pidFile, consoleSock, false)...)...)
	var stderrBuf bytes.Buffer
	var stdinW *os.File
	if !o.Tty {
		cmd.Stdout, cmd.Stderr = nonNil(o.Stdout), nonNil(o.Stderr)
		if o.Stdin != nil {
			r, w, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			defer r.Close()
			cmd.Stdin, stdinW = r, w
		}
	} else {
		cmd.Stderr = &stderrBuf
	}
	if err := cmd.Start(); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	// Feed stdin; the copy ends when the caller's stream ends (EOF closes
	// the process's stdin) or the process is gone (the write fails).
	if stdinW != nil {
		go func() {
			io.Copy(stdinW, o.Stdin)
			stdinW.Close()
		}()
	}
	var ioDone sync.WaitGroup
	var console *os.File
	if o.Tty {
		console, err = monitor.ReceiveConsole(ln, 30*time.Second)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 0, fmt.Errorf("exec in %s: receive terminal: %w (%s)", id, err, strings.TrimSpace(stderrBuf.String()))
		}
		defer console.Close()
		ioDone.Add(1)
		go func() { defer ioDone.Done(); io.Copy(nonNil(o.Stdout), console) }()
		if o.Stdin != nil {
			go io.Copy(console, o.Stdin)
		}
		if o.Resize != nil {
			go func() {
				for sz := range o.Resize {
					unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: sz.Width, Row: sz.Height})
				}
			}()
		}
	}

	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-waitc:
	case <-ctx.Done():
		// runc exec forwards signals but cannot forward SIGKILL: kill the
		// process in the container itself, then runc exits with it.
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		cmd.Process.Signal(unix.SIGKILL)
		<-waitc
		return 0, fmt.Errorf("exec in %s: %w", id, ctx.Err())
	}
	if console != nil {
		// The terminal's output ends with EIO once the process exits.
		ioDone.Wait()
	}
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		return exitErr.ExitCode(), nil
	}
	if waitErr != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, waitErr)
	}
	return 0, nil
}

func nonNil(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// execProcess is the container's process spec with the exec's command.
func execProcess(bundle string, o ExecOptions) (*specs.Process, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, err
	}
	p := spec.Process
	p.Args = o.Cmd
	p.Terminal = o.Tty
	if o.Tty {
		runtime.WithEnv("TERM=xterm")(&spec)
	}
	return p, nil
}

// maxExecOutput bounds ExecSync's output so the whole response stays under
// kubelet's 16 MiB receive limit.
const maxExecOutput = 16<<20 - 64<<10

// cappedBuffers are stdout and stderr sharing one byte budget; what exceeds
// it is dropped (the process is not blocked).
type cappedBuffers struct {
	mu     sync.Mutex
	left   int
	stdout bytes.Buffer
	stderr bytes.Buffer
}

type cappedWriter struct {
	c   *cappedBuffers
	buf *bytes.Buffer
}

func (w cappedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	n := min(len(p), w.c.left)
	w.buf.Write(p[:n])
	w.c.left -= n
	return len(p), nil
}

// ExecSync runs a command to completion (or timeout seconds, 0 = none) and
// returns its output and exit code.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout int64) (stdout, stderr []byte, code int, err error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
		defer cancel()
	}
	bufs := &cappedBuffers{left: maxExecOutput}
	code, err = m.Exec(ctx, id, ExecOptions{Cmd: cmd, Stdout: cappedWriter{bufs, &bufs.stdout}, Stderr: cappedWriter{bufs, &bufs.stderr}})
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("command %q timed out after %ds: %w", strings.Join(cmd, " "), timeout, context.DeadlineExceeded)
	}
	return bufs.stdout.Bytes(), bufs.stderr.Bytes(), code, err
}
