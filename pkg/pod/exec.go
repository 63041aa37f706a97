package pod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	resultFile := filepath.Join(tmp, "result")
	cmd := m.execCommand(c, procFile, pidFile, resultFile, o.Tty)
	start := startWithPipes
	if o.Tty {
		start = startWithTerminal
	}
	drained, closeIO, err := start(cmd, o)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer closeIO()

	waitErr, cancelled := waitExec(ctx, cmd, pidFile)
	if cancelled {
		return 0, fmt.Errorf("exec in %s: %w", id, ctx.Err())
	}
	drained()
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		waitErr = nil // the output was still held after execDrain: cut off
	}
	var exitErr *exec.ExitError
	if o.Tty {
		if errors.As(waitErr, &exitErr) {
			return exitErr.ExitCode(), nil
		}
		if waitErr != nil {
			return 0, fmt.Errorf("exec in %s: %w", id, waitErr)
		}
		return 0, nil
	}
	if waitErr != nil {
		// exec-wait itself failed (its message went to the stderr stream).
		return 0, fmt.Errorf("exec in %s: the exec helper failed: %w", id, waitErr)
	}
	res, err := monitor.ReadExecResult(resultFile)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	// A runtime that failed to start the process (no such executable...)
	// answers with its own exit code and message, as a non-detached exec
	// did: kubelet and critest expect a non-zero code, not an RPC error.
	return res.ExitCode, nil
}

// execCommand is the command that runs one exec: runc itself with a
// terminal; without one, the monitor binary's exec-wait around a detached
// runc exec.
func (m *Manager) execCommand(c *Container, procFile, pidFile, resultFile string, tty bool) *exec.Cmd {
	id, rt := c.ID, m.runtimeOf(c)
	var cmd *exec.Cmd
	if tty {
		// With a terminal runc proxies the container's pty to its own
		// stdio; nothing else holds it, so runc exits with the process.
		cmd = exec.Command(rt.Binary, append(rt.GlobalArgs(), rt.ExecArgs(id, procFile, pidFile, "", false)...)...)
	} else {
		// Without one, the process gets our pipes directly from a detached
		// runc exec, and exec-wait (a subreaper) waits for it: its exit is
		// seen at once even when a child it left behind still holds the
		// output (a non-detached runc exec waits for every holder of its
		// pipes; monitor.ExecWait).
		argv := append([]string{"exec-wait", pidFile, resultFile, rt.Binary}, rt.GlobalArgs()...)
		cmd = exec.Command(m.cfg.MonitorBinary, append(argv, rt.ExecArgs(id, procFile, pidFile, "", true)...)...)
	}
	// Once the process is gone, its output gets this long to drain from
	// whoever still holds it (a background child); then the call returns
	// with what it has.
	cmd.WaitDelay = execDrain
	return cmd
}

// startWithPipes starts cmd with the caller's writers as its output (os/exec
// copies them from pipes) and its stdin fed from o.Stdin. drained waits for
// the output (os/exec's Wait does); closeIO releases what start made.
func startWithPipes(cmd *exec.Cmd, o ExecOptions) (drained, closeIO func(), err error) {
	cmd.Stdout, cmd.Stderr = nonNil(o.Stdout), nonNil(o.Stderr)
	var stdinR, stdinW *os.File
	if o.Stdin != nil {
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			return nil, nil, err
		}
		cmd.Stdin = stdinR
	}
	closeIO = func() {
		if stdinR != nil {
			stdinR.Close()
		}
	}
	if err := cmd.Start(); err != nil {
		closeIO()
		if stdinW != nil {
			stdinW.Close()
		}
		return nil, nil, err
	}
	// Feed stdin; the copy ends when the caller's stream ends (EOF closes
	// the process's stdin) or the process is gone.
	if stdinW != nil {
		go func() {
			io.Copy(stdinW, o.Stdin)
			stdinW.Close()
		}()
	}
	return func() {}, closeIO, nil
}

// startWithTerminal starts cmd on a pty of ours: a non-detached runc exec
// with a terminal proxies the container's pty to its own stdio, and a pty
// (not pipes) keeps resizing possible (runtime.OpenPTY). drained waits for
// the terminal's output, which ends (EIO) once runc and the process are
// gone; closeIO closes the pty and ends the resize loop.
func startWithTerminal(cmd *exec.Cmd, o ExecOptions) (drained, closeIO func(), err error) {
	master, slave, err := runtime.OpenPTY()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	err = cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	var output sync.WaitGroup
	output.Add(1)
	go func() { defer output.Done(); io.Copy(nonNil(o.Stdout), master) }()
	if o.Stdin != nil {
		go io.Copy(master, o.Stdin)
	}
	done := make(chan struct{})
	if o.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-o.Resize:
					if !ok {
						return
					}
					if runtime.SetWinsize(master, sz.Width, sz.Height) == nil {
						cmd.Process.Signal(unix.SIGWINCH)
					}
				case <-done:
					return
				}
			}
		}()
	}
	return output.Wait, func() { close(done); master.Close() }, nil
}

// waitExec waits for a started exec. When ctx ends first it kills the
// process in the container itself and lets its parent (runc with a
// terminal, else exec-wait) reap it and exit: killing the parent first
// would leave the process to the container's init, which may never reap it.
// The process may not exist yet (runc exec takes up to a second on a slow
// node, more than a 1 s probe timeout): it waits for runc's pid file.
func waitExec(ctx context.Context, cmd *exec.Cmd, pidFile string) (waitErr error, cancelled bool) {
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	select {
	case err := <-waitc:
		return err, false
	case <-ctx.Done():
	}
	giveUp := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// Until the process is ours to kill: runc writes the pid file while
		// its own helpers may still stand between us and the process.
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 &&
				killDescendantOf(pid, cmd.Process.Pid) {
				break
			}
		}
		select {
		case <-waitc:
			return nil, true
		case <-giveUp:
			cmd.Process.Signal(unix.SIGKILL)
			<-waitc
			return nil, true
		case <-tick.C:
		}
	}
	select {
	case <-waitc:
	case <-time.After(10 * time.Second):
		cmd.Process.Signal(unix.SIGKILL)
		<-waitc
	}
	return nil, true
}

// execDrain bounds how long an exec's output is read after its process
// exited, for children it left holding the output.
const execDrain = time.Second

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

// killDescendantOf SIGKILLs pid if it descends from ancestor (the exec's
// waiter, which reaps it; runc and its init helpers may stand in between
// until they exit) and reports whether it did: a pid read from a file may
// have been reused once its process was reaped. The check and the signal
// go through one pidfd, so the pid cannot be reused in between.
func killDescendantOf(pid, ancestor int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false // gone, or not there yet
	}
	defer unix.Close(fd)
	p := parentPid(pid)
	for range 8 {
		if p == ancestor {
			return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil
		}
		if p <= 1 {
			return false
		}
		p = parentPid(p)
	}
	return false
}

// parentPid reads the parent of pid from /proc/<pid>/stat (field 4, after
// the command name in parentheses, which may contain anything); 0 if
// unknown.
func parentPid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}
