package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/cri-shim/cri-shim/pkg/atomicfile"
	"golang.org/x/sys/unix"
)

// ExecResult is what ExecWait leaves in its result file.
type ExecResult struct {
	// Pid of the exec'd process in the host's PID namespace (0 when the
	// runtime failed before starting it).
	Pid int `json:"pid,omitempty"`
	// ExitCode of the process, 128+signal when it was killed; when
	// RuntimeFailed, the runtime's exit code.
	ExitCode int `json:"exitCode"`
	// RuntimeFailed: the runtime's exec failed; no process ran to its end.
	RuntimeFailed bool `json:"runtimeFailed,omitempty"`
}

// ExecWait runs one exec for cri-shim (`cri-shim-monitor exec-wait`): it
// becomes a child subreaper, runs the runtime's `exec --detach --pid-file
// PIDFILE ...` (argv) with its own stdio, which the process inherits, then
// waits for that process, which the kernel hands to it when the runtime
// exits, and writes its exit code to resultFile.
//
// Why not simply a non-detached `runc exec`: runc then copies the process's
// output through pipes of its own and does not exit while any process holds
// them, so a command that leaves a background child behind (`sh -c 'daemon
// &'`) kept ExecSync waiting until its timeout, or forever. Here the
// process's exit is seen the moment it happens, whoever still holds its
// output; cri-shim drains that for a bounded time.
func ExecWait(pidFile, resultFile string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("exec-wait: no runtime command")
	}
	// The process's parent is the runtime, which exits at once: as a
	// subreaper we inherit it (and can reap it) instead of the host's init.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("exec-wait: become child subreaper: %w", err)
	}
	rt := exec.Command(argv[0], argv[1:]...)
	rt.Stdin, rt.Stdout, rt.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := rt.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("exec-wait: run %s: %w", argv[0], err)
		}
		return writeExecResult(resultFile, ExecResult{ExitCode: ee.ExitCode(), RuntimeFailed: true})
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("exec-wait: the runtime wrote no pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("exec-wait: bad pid file %q", data)
	}
	// Reap until it is our process; anything else handed to us (nothing
	// should be: orphans of the process stay in the container's PID
	// namespace) is reaped and ignored.
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// ECHILD: the process was never handed to us.
			return fmt.Errorf("exec-wait: wait for the exec'd process %d: %w", pid, err)
		}
		if got == pid && (ws.Exited() || ws.Signaled()) {
			code, _ := exitCode(ws)
			return writeExecResult(resultFile, ExecResult{Pid: pid, ExitCode: code})
		}
	}
}

func writeExecResult(path string, r ExecResult) error {
	data, _ := json.Marshal(r)
	// Not durable: the result lives as long as the exec call that reads it.
	if err := atomicfile.Replace(path, data, 0o600); err != nil {
		return fmt.Errorf("exec-wait: write the result: %w", err)
	}
	return nil
}

// ReadExecResult reads what ExecWait wrote before it exited.
func ReadExecResult(path string) (ExecResult, error) {
	var r ExecResult
	data, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("the exec helper left no result: %w", err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("exec result %s: %w", path, err)
	}
	return r, nil
}
