package e2e

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCheckpointContainer: CheckpointContainer through the gRPC API. Bad
// requests are refused with the CRI's codes; a node without CRIU answers
// FailedPrecondition and leaves no file; where `criu check` passes (the VM
// proves it with Debian 13's CRIU, hack/vm/guest/systemd-node.sh), the
// archive has the layout checkpointctl reads (checkpoint/, config.dump,
// spec.dump, rootfs-diff.tar with what the container wrote, deleted.files
// with what it deleted) and the container keeps running; where it fails
// (Debian 12's CRIU 3.17 on a 6.x kernel), the answer is FailedPrecondition
// with CRIU's reason.
func TestCheckpointContainer(t *testing.T) {
	r := ownRuntime(t, "checkpoint")
	r.args = []string{"--criu", "/nonexistent/criu"}
	r.kill9()
	r.restart(t)
	ctx := r.ctx(t)
	pod := r.podConfig("ckpt")
	podID := r.runPod(t, pod)
	id := r.startContainer(t, podID, pod, container("app", busyboxImage, "sh", "-c",
		"echo kept > /new-file && rm /etc/group && i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done"))
	exited := r.startContainer(t, podID, pod, container("done", busyboxImage, "true"))
	dir := t.TempDir()
	archive := filepath.Join(dir, "checkpoint.tar")
	if err := waitFor(10e9, func() bool {
		st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: exited})
		return err == nil && st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	}); err != nil {
		t.Fatal("container done never exited")
	}

	for _, tc := range []struct {
		name, id, location string
		want               codes.Code
	}{
		{"unknown container", "no-such-container", archive, codes.NotFound},
		{"relative location", id, "checkpoint.tar", codes.InvalidArgument},
		{"no location", id, "", codes.InvalidArgument},
		{"missing directory", id, filepath.Join(dir, "no", "such", "dir.tar"), codes.InvalidArgument},
		{"exited container", exited, archive, codes.FailedPrecondition},
		{"no CRIU", id, archive, codes.FailedPrecondition},
	} {
		_, err := r.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: tc.id, Location: tc.location})
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if tc.name == "no CRIU" && (err == nil || !strings.Contains(err.Error(), "criu")) {
			t.Errorf("no CRIU: %v does not say what is missing", err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused checkpoints left %v in %s", entries, dir)
	}

	// Now with this node's CRIU, whatever it can do.
	r.args = nil
	r.kill9()
	r.restart(t)
	ctx = r.ctx(t)
	criuErr := exec.Command("criu", "check").Run()
	_, err := r.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: archive, Timeout: 60})
	if criuErr != nil {
		// Debian 12's CRIU on this kernel: refused up front, with CRIU's reason.
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "criu") {
			t.Errorf("`criu check` fails here (%v) but CheckpointContainer answered %v, want FailedPrecondition naming CRIU", criuErr, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("a refused checkpoint left %v", entries)
		}
		t.Logf("CRIU cannot dump on this node: %v", err)
	} else {
		if err != nil {
			t.Fatalf("CheckpointContainer: %v", err)
		}
		checkArchive(t, archive, id)
	}
	st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the checkpoint the container is %v (%v), want running", st.GetStatus().GetState(), err)
	}
}

// checkArchive reads a checkpoint archive as checkpointctl would.
func checkArchive(t *testing.T, archive, id string) {
	t.Helper()
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600 (it holds the container's memory)", fi.Mode().Perm())
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		names = append(names, h.Name)
		if h.Name == "config.dump" || h.Name == "deleted.files" || h.Name == "rootfs-diff.tar" || h.Name == "spec.dump" {
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
	for _, want := range []string{"checkpoint/", "checkpoint/inventory.img", "config.dump", "spec.dump", "rootfs-diff.tar", "deleted.files"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s (has %v)", want, names)
		}
	}
	var cfg struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(files["config.dump"], &cfg); err != nil || cfg.ID != id || cfg.Name != "app" {
		t.Errorf("config.dump %s: %v", files["config.dump"], err)
	}
	var deleted []string
	if err := json.Unmarshal(files["deleted.files"], &deleted); err != nil || !slices.Contains(deleted, "etc/group") {
		t.Errorf("deleted.files %s (%v), want etc/group", files["deleted.files"], err)
	}
	diff := tar.NewReader(strings.NewReader(string(files["rootfs-diff.tar"])))
	found := false
	for {
		h, err := diff.Next()
		if err != nil {
			break
		}
		if h.Name == "new-file" {
			b, _ := io.ReadAll(diff)
			found = string(b) == "kept\n"
		}
	}
	if !found {
		t.Errorf("rootfs-diff.tar lacks new-file with its content")
	}
}
