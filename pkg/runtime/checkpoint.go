package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// ErrNoCRIU marks a node where checkpointing cannot work: CRIU is not
// installed, or `criu check` finds the kernel lacking.
var ErrNoCRIU = errors.New("CRIU cannot checkpoint on this node")

// CheckCRIU finds criu (a path or a name looked up in PATH) and runs
// `criu check`, the test CRIU itself offers for "can this kernel be
// dumped". The error wraps ErrNoCRIU and errdefs.ErrFailedPrecondition and
// carries CRIU's own words.
func CheckCRIU(ctx context.Context, criu string) (string, error) {
	if criu == "" {
		criu = "criu"
	}
	path, err := exec.LookPath(criu)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found (install the criu package): %v: %w", ErrNoCRIU, criu, err, errdefs.ErrFailedPrecondition)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "check")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: `%s check` failed (%v): %s: %w", ErrNoCRIU, path, err, firstErrorLine(out.String()), errdefs.ErrFailedPrecondition)
	}
	return path, nil
}

// firstErrorLine is the first line CRIU marked as an error, else the last.
func firstErrorLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "Error") {
			return l
		}
	}
	return lines[len(lines)-1]
}

// CheckpointOptions says where a checkpoint goes.
type CheckpointOptions struct {
	// CRIU is the criu binary (CheckCRIU's answer).
	CRIU string
	// ImagePath receives CRIU's image files; WorkPath its dump.log.
	ImagePath, WorkPath string
}

// Checkpoint dumps a running container with CRIU through the runtime's
// `checkpoint` and leaves it running. Established TCP connections, file
// locks and unix sockets to peers outside the container are dumped rather
// than refused: a forensic checkpoint of a serving container must not fail
// because of them.
func (r *Runc) Checkpoint(ctx context.Context, id string, o CheckpointOptions) error {
	var args []string
	if filepath.Base(r.binary()) != "crun" { // crun links libcriu and has no --criu
		args = append(args, "--criu", o.CRIU)
	}
	args = append(args, "checkpoint", "--image-path", o.ImagePath, "--work-path", o.WorkPath,
		"--leave-running", "--tcp-established", "--file-locks", "--ext-unix-sk", id)
	_, err := r.run(ctx, id, nil, args...)
	return err
}
