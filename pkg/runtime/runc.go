package runtime

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
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runc is a client of the OCI runtime's command line. Every call is one
// process; nothing here keeps state besides the runtime's own root.
type Runc struct {
	// Binary is the runtime executable (default "runc" from PATH).
	Binary string
	// Root is the runtime's state directory (--root); it lives under
	// cri-shim's --state so a reboot clears it.
	Root string
	// SystemdCgroup makes the runtime create cgroups as systemd scopes
	// (--systemd-cgroup, runc's and crun's flag): the systemd driver.
	SystemdCgroup bool
}

// GlobalArgs are the flags every runtime command takes before its
// subcommand.
func (r *Runc) GlobalArgs() []string {
	args := []string{"--root", r.Root}
	if r.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return args
}

// ExitError is a runtime command that failed; Stderr holds its last words.
type ExitError struct {
	Args   []string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s: exit status %d: %s", strings.Join(e.Args, " "), e.Code, e.Stderr)
}

func (r *Runc) binary() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

// Command returns the runtime command with the global flags set; the caller
// wires stdio and runs it (the monitor does that for create).
func (r *Runc) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.binary(), append(r.GlobalArgs(), args...)...)
	// A runtime killed by a cancelled context must not take a half-made
	// container with it silently: runc cleans up on SIGTERM/SIGKILL only
	// partly, so callers still run Delete on failure.
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	return cmd
}

// run runs a command to completion and classifies its failure.
func (r *Runc) run(ctx context.Context, id string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := r.Command(ctx, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, r.classify(id, cmd, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// classify turns a failed runtime command into an error the callers can
// test with errdefs: a container the runtime does not know is NotFound,
// decided by its state directory, not by parsing messages.
func (r *Runc) classify(id string, cmd *exec.Cmd, err error, stderr string) error {
	args := cmd.Args
	if n := 1 + len(r.GlobalArgs()); len(args) >= n {
		args = args[n:] // the subcommand and its arguments
	}
	ee := &ExitError{Args: args, Code: -1, Stderr: lastLine(stderr)}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		ee.Code = exitErr.ExitCode()
	} else {
		ee.Stderr = err.Error()
	}
	if id != "" && !r.Exists(id) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, ee)
	}
	return ee
}

// Exists reports whether the runtime holds state for id.
func (r *Runc) Exists(id string) bool {
	_, err := os.Stat(filepath.Join(r.Root, id, "state.json"))
	return err == nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	// runc logs as logfmt: keep the message.
	if i := strings.Index(s, `msg="`); i >= 0 {
		if m, err := strconv.Unquote(s[i+4:]); err == nil {
			return m
		}
		if j := strings.LastIndexByte(s, '"'); j > i+5 {
			return s[i+5 : j]
		}
	}
	return s
}

// CreateArgs are the arguments of `create` (or `run --detach`) for a bundle.
func (r *Runc) CreateArgs(id, bundle, pidFile, consoleSocket string, detachRun bool) []string {
	args := []string{"create"}
	if detachRun {
		args = []string{"run", "--detach"}
	}
	args = append(args, "--bundle", bundle, "--pid-file", pidFile)
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	return append(args, id)
}

// Start starts a created container's process.
func (r *Runc) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, id, nil, "start", id)
	return err
}

// Kill sends sig to the container's init (all: to every process in it).
func (r *Runc) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, id, nil, append(args, id, strconv.Itoa(int(sig)))...)
	return err
}

// Delete removes the runtime's state of a stopped container; force also
// kills a running one (slow: runc sleeps ~100 ms after the kill, so callers
// kill and reap first). Absent is success.
func (r *Runc) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, id, nil, append(args, id)...)
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// State is the runtime's view of a container.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}

// State asks the runtime for a container's state.
func (r *Runc) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, id, nil, "state", id)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", id, err)
	}
	return &s, nil
}

// List returns the IDs the runtime knows.
func (r *Runc) List() ([]string, error) {
	entries, err := os.ReadDir(r.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Update applies new resource limits to a running container.
func (r *Runc) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	// A file, not "-": crun reads --resources only from a path.
	f, err := os.CreateTemp("", "cri-shim-resources-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write resources for %s: %w", id, err)
	}
	_, err = r.run(ctx, id, nil, "update", "--resources", f.Name(), id)
	return err
}

// ExecArgs are the arguments of `exec` for a process spec file.
func (r *Runc) ExecArgs(id, processFile, pidFile, consoleSocket string, detach bool) []string {
	args := []string{"exec", "--process", processFile}
	if pidFile != "" {
		args = append(args, "--pid-file", pidFile)
	}
	if consoleSocket != "" {
		args = append(args, "--tty", "--console-socket", consoleSocket)
	}
	if detach {
		args = append(args, "--detach")
	}
	return append(args, id)
}

// Classify exposes error classification for commands callers ran
// themselves through Command.
func (r *Runc) Classify(id string, cmd *exec.Cmd, err error, stderr string) error {
	return r.classify(id, cmd, err, stderr)
}
