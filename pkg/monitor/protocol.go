package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cri-shim/cri-shim/pkg/atomicfile"
)

// Request is one call to the monitor.
type Request struct {
	Op     string         `json:"op"` // create, reopen, forget, events, attach, ping
	ID     string         `json:"id,omitempty"`
	Create *CreateRequest `json:"create,omitempty"`
	Attach *AttachRequest `json:"attach,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error string `json:"error,omitempty"`
	// Kind is the errdefs kind of Error ("NotFound"...; errors.go), empty
	// for an error of no particular kind.
	Kind string `json:"kind,omitempty"`
	Pid  int    `json:"pid,omitempty"`
}

// CreateRequest asks the monitor to create a container with the OCI
// runtime and take over its stdio.
type CreateRequest struct {
	ID            string `json:"id"`
	Bundle        string `json:"bundle"`
	RuntimeBinary string `json:"runtimeBinary"`
	RuntimeRoot   string `json:"runtimeRoot"`
	// Run creates and starts in one runtime call (the pause container).
	Run bool `json:"run,omitempty"`
	// LogPath is the CRI log file; empty discards output.
	LogPath string `json:"logPath,omitempty"`
	// LogDir, when set, is the directory LogPath is relative to and beyond
	// which the log file may not resolve (kubelet's pod log directory).
	LogDir    string `json:"logDir,omitempty"`
	Terminal  bool   `json:"terminal,omitempty"`
	Stdin     bool   `json:"stdin,omitempty"`
	StdinOnce bool   `json:"stdinOnce,omitempty"`
	// SystemdCgroup calls the runtime with --systemd-cgroup (the systemd
	// cgroup driver).
	SystemdCgroup bool `json:"systemdCgroup,omitempty"`
	// CgroupDir is the container's memory cgroup directory, where the
	// monitor follows OOM kills; empty: not followed.
	CgroupDir string `json:"cgroupDir,omitempty"`
}

// runtimeGlobalArgs are the runtime's flags before its subcommand; the
// same as runtime.Runc.GlobalArgs (this package does not import it, to keep
// the monitor small).
func runtimeGlobalArgs(root string, systemdCgroup bool) []string {
	args := []string{"--root", root}
	if systemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return args
}

// AttachRequest selects the streams of an attach.
type AttachRequest struct {
	Stdin  bool `json:"stdin"`
	Stdout bool `json:"stdout"`
	Stderr bool `json:"stderr"`
}

// Exit is how a container process ended, as recorded by the monitor.
type Exit struct {
	ID         string    `json:"id"`
	Pid        int       `json:"pid"`
	ExitCode   int       `json:"exitCode"`
	Signal     int       `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	// Reason is empty for a normal exit; "Unknown" when the monitor could
	// not observe the exit itself.
	Reason string `json:"reason,omitempty"`
	// OOMKilled: the kernel's OOM killer killed a process of the
	// container's cgroup while it ran.
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// Frame types of an attach connection: [type byte][uint32 big-endian length][payload].
const (
	FrameStdin    = '0'
	FrameStdout   = '1'
	FrameStderr   = '2'
	FrameResize   = 'r' // payload: uint16 width, uint16 height
	FrameCloseIn  = 'c' // the client closed stdin
	FrameExited   = 'x' // the container's output ended
	maxFrameBytes = 1 << 20
)

// Paths under the monitor's directory.
func socketPath(dir string) string       { return filepath.Join(dir, "monitor.sock") }
func recordPath(dir, id string) string   { return filepath.Join(dir, "containers", id+".json") }
func exitPath(dir, id string) string     { return filepath.Join(dir, "exits", id+".json") }
func ioDir(dir, id string) string        { return filepath.Join(dir, "io", id) }
func stdioFifo(dir, id, s string) string { return filepath.Join(ioDir(dir, id), s) }
func pidFilePath(dir, id string) string  { return filepath.Join(ioDir(dir, id), "pid") }
func monitorLogPath(dir string) string   { return filepath.Join(dir, "monitor.log") }
func monitorPidPath(dir string) string   { return filepath.Join(dir, "monitor.pid") }
func ensureDirs(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "containers"), filepath.Join(dir, "exits"), filepath.Join(dir, "io")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// ReadExit returns the recorded exit of a container, or nil if none.
func ReadExit(dir, id string) (*Exit, error) {
	data, err := os.ReadFile(exitPath(dir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e Exit
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode exit record of %s: %w", id, err)
	}
	return &e, nil
}

// writeJSONAtomic replaces a record atomically. Not durably: everything the
// monitor writes lives under --state, which a reboot clears, and what must
// survive a crash of the monitor (an exit record, the only witness of an
// exit code) is in the page cache the moment the rename returns.
func writeJSONAtomic(path string, v any) error { return atomicfile.ReplaceJSON(path, v, 0o600) }
