package pod

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// CheckpointContainer dumps a running container with CRIU (through the OCI
// runtime's `checkpoint`, leaving it running) into a tar archive at
// location, in the layout kubelet's forensic checkpoints, CRI-O, containerd
// and checkpointctl share: checkpoint/ (CRIU's images), config.dump,
// spec.dump, rootfs-diff.tar (what the container changed in its writable
// layer), deleted.files (what it deleted) and dump.log. The archive holds
// the container's memory, so it is written 0600 and appears at location
// only when complete. A node without a working CRIU answers
// FailedPrecondition before the container is touched.
func (m *Manager) CheckpointContainer(ctx context.Context, id, location string) error {
	if location == "" || !filepath.IsAbs(location) {
		return invalid("checkpoint location %q must be an absolute file path", location)
	}
	if _, ok := m.containers.get(id); !ok {
		return notFound("container", id)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	c, ok := m.containers.get(id)
	if !ok {
		return notFound("container", id)
	}
	if c.State != ContainerRunning {
		return fmt.Errorf("container %s is %s, only a running container can be checkpointed: %w", id, c.State, errdefs.ErrFailedPrecondition)
	}
	dir := filepath.Dir(location)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return invalid("checkpoint location %s: directory %s does not exist", location, dir)
	}
	criu, err := runtime.CheckCRIU(ctx, m.cfg.CRIU)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	spec, err := os.ReadFile(filepath.Join(m.bundleDir(id), "config.json"))
	if err != nil {
		return fmt.Errorf("checkpoint %s: read its OCI spec: %w", id, err)
	}
	if err := m.writeCRIUConfig(c, spec); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	// The work directory sits next to the archive so the final rename is
	// on one filesystem; it goes whatever happens.
	tmp, err := os.MkdirTemp(dir, ".cri-shim-checkpoint-"+shortID(id)+"-")
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	images, work := filepath.Join(tmp, metadata.CheckpointDirectory), filepath.Join(tmp, "work")
	for _, d := range []string{images, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("checkpoint %s: %w", id, err)
		}
	}
	start := time.Now()
	if err := m.runtimeOf(c).Checkpoint(ctx, id, runtime.CheckpointOptions{CRIU: criu, ImagePath: images, WorkPath: work}); err != nil {
		return fmt.Errorf("checkpoint %s: %w%s", id, err, dumpLogTail(work))
	}
	if err := m.checkpointMetadata(c, spec, tmp, work); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	if err := writeArchive(tmp, location, []string{metadata.CheckpointDirectory, metadata.ConfigDumpFile,
		metadata.SpecDumpFile, metadata.RootFsDiffTar, metadata.DeletedFilesFile, metadata.DumpLogFile}); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	klog.FromContext(ctx).Info("Checkpointed container", "id", id, "archive", location, "duration", time.Since(start))
	return nil
}

func shortID(id string) string { return id[:min(len(id), 12)] }

// criuConfigPath is the container's CRIU configuration file, in its bundle
// (so it goes with the container); its spec names it (criuConfigAnnotation).
func (m *Manager) criuConfigPath(id string) string {
	return filepath.Join(m.bundleDir(id), "criu.conf")
}

// writeCRIUConfig tells CRIU which of the container's open files live
// outside its mount namespace: the stdout/stderr FIFOs the monitor made.
// CRIU cannot resolve such a file and refuses the dump unless it is named
// as external (`external file[MNT_ID:INODE]`, mnt_id from fdinfo).
func (m *Manager) writeCRIUConfig(c *Container, spec []byte) error {
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return fmt.Errorf("read the container's OCI spec: %w", err)
	}
	if s.Annotations[criuConfigAnnotation] != m.criuConfigPath(c.ID) {
		return fmt.Errorf("container %s was created by a cri-shim without checkpoint support (its spec names no CRIU configuration); recreate it: %w",
			c.ID, errdefs.ErrFailedPrecondition)
	}
	var lines []string
	for fd := range 3 {
		link := fmt.Sprintf("/proc/%d/fd/%d", c.Pid, fd)
		target, err := os.Readlink(link)
		if err != nil || !filepath.IsAbs(target) {
			continue // closed, or an anonymous pipe or socket CRIU dumps itself
		}
		var st syscall.Stat_t
		if err := syscall.Stat(link, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			continue
		}
		mnt, err := fdMountID(c.Pid, fd)
		if err != nil {
			return err
		}
		// Both numbers in hex: CRIU looks the key up as "file[%x:%llx]".
		lines = append(lines, fmt.Sprintf("external file[%x:%x]", mnt, st.Ino))
	}
	return os.WriteFile(m.criuConfigPath(c.ID), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// fdMountID is the mnt_id of /proc/PID/fdinfo/FD.
func fdMountID(pid, fd int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "mnt_id:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no mnt_id in /proc/%d/fdinfo/%d", pid, fd)
}

// dumpLogTail is CRIU's last error lines, for an error message.
func dumpLogTail(work string) string {
	b, err := os.ReadFile(filepath.Join(work, metadata.DumpLogFile))
	if err != nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Error") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) > 3 {
		errs = errs[len(errs)-3:]
	}
	if len(errs) == 0 {
		return ""
	}
	return " (CRIU: " + strings.Join(errs, "; ") + ")"
}

// checkpointMetadata writes config.dump, spec.dump (the bundle's spec),
// rootfs-diff.tar, deleted.files and dump.log into dir.
func (m *Manager) checkpointMetadata(c *Container, spec []byte, dir, work string) error {
	cfg := metadata.ContainerConfig{
		ID: c.ID, Name: c.Config.GetMetadata().GetName(),
		RootfsImage: c.ImageRef, RootfsImageName: c.ImageRef, RootfsImageRef: c.ImageID,
		OCIRuntime: filepath.Base(m.runtimeOf(c).Binary), CreatedTime: c.CreatedAt, CheckpointedAt: time.Now(),
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, metadata.ConfigDumpFile), b, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, metadata.SpecDumpFile), spec, 0o600); err != nil {
		return err
	}
	upper, err := m.cfg.Images.RootfsUpper(c.ID)
	if err != nil {
		return fmt.Errorf("find the container's writable layer: %w", err)
	}
	deleted, err := writeRootfsDiff(upper, filepath.Join(dir, metadata.RootFsDiffTar))
	if err != nil {
		return fmt.Errorf("archive the writable layer: %w", err)
	}
	if len(deleted) > 0 {
		b, err := json.Marshal(deleted)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, metadata.DeletedFilesFile), b, 0o600); err != nil {
			return err
		}
	}
	if err := os.Rename(filepath.Join(work, metadata.DumpLogFile), filepath.Join(dir, metadata.DumpLogFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeRootfsDiff archives an overlay upper directory: files, directories,
// links and device nodes as they are, with owners and modes; overlayfs
// whiteouts (0:0 character devices) are not archived but returned, as the
// paths deleted.files lists.
func writeRootfsDiff(upper, dst string) (deleted []string, err error) {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = addTree(tw, upper, upper, func(rel string, info fs.FileInfo, st *syscall.Stat_t) bool {
		if info.Mode()&fs.ModeCharDevice != 0 && st != nil && st.Rdev == 0 {
			deleted = append(deleted, rel)
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return deleted, f.Close()
}

// addTree writes root and everything under it into tw, named relative to
// base: files with their content, directories, symlinks, devices, hard
// links once (then as links), owners by number only. keep, when set, says
// which entries go in (it may note the others).
func addTree(tw *tar.Writer, base, root string, keep func(rel string, info fs.FileInfo, st *syscall.Stat_t) bool) error {
	links := map[uint64]string{} // inode -> first archived path
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(base, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		if keep != nil && !keep(rel, info, st) {
			return nil
		}
		target := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", "" // numeric IDs: the host's names mean nothing in the container
		if st != nil && info.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := links[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[st.Ino] = rel
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			return copyFile(tw, path)
		}
		return nil
	})
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// writeArchive tars the named entries of dir (those that exist) into
// location: written to a temporary file beside it, synced, then renamed.
func writeArchive(dir, location string, names []string) error {
	f, err := os.CreateTemp(filepath.Dir(location), ".cri-shim-checkpoint-*.tar")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, name := range names {
		root := filepath.Join(dir, name)
		if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := addTree(tw, dir, root, nil); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, location); err != nil {
		return err
	}
	ok = true
	return nil
}
