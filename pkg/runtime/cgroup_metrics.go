package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupSpec is a cgroup's configured limits, read back from the cgroup
// files (so an UpdateContainerResources shows at once), in cgroup v1 units
// as cAdvisor's container_spec_* metrics report them. 0 means "not set".
type CgroupSpec struct {
	CPUPeriod, CPUQuota uint64 // microseconds
	CPUShares           uint64
	MemoryLimit         uint64
	MemoryReservation   uint64 // v1 soft limit, v2 memory.low
	MemorySwapLimit     uint64 // v1 memory+swap, v2 swap alone (as each kernel counts)
}

// ReadCgroupSpec reads the limits of path (as in an OCI cgroupsPath) under
// root (CgroupRoot except in tests). Files a kernel lacks read as unset.
func ReadCgroupSpec(root, path string) (CgroupSpec, error) {
	var s CgroupSpec
	if IsCgroup2(root) {
		dir := filepath.Join(root, path)
		if _, err := os.Stat(dir); err != nil {
			return s, fmt.Errorf("%w: %s: %v", ErrNoCgroup, path, err)
		}
		if f := readFields(filepath.Join(dir, "cpu.max")); len(f) == 2 {
			s.CPUQuota = parseLimit(f[0])
			s.CPUPeriod = parseLimit(f[1])
		}
		if w := readUint(filepath.Join(dir, "cpu.weight")); w > 0 {
			// The inverse of the shares -> weight mapping kubelet and runc use
			// (weight = 1 + (shares-2)*9999/262142).
			s.CPUShares = 2 + (w-1)*262142/9999
		}
		s.MemoryLimit = limit(readUint(filepath.Join(dir, "memory.max")))
		s.MemoryReservation = limit(readUint(filepath.Join(dir, "memory.low")))
		s.MemorySwapLimit = limit(readUint(filepath.Join(dir, "memory.swap.max")))
		return s, nil
	}
	cpu, mem := filepath.Join(root, "cpu", path), filepath.Join(root, "memory", path)
	if _, err := os.Stat(cpu); err != nil {
		return s, fmt.Errorf("%w: %s: %v", ErrNoCgroup, path, err)
	}
	s.CPUPeriod = readUint(filepath.Join(cpu, "cpu.cfs_period_us"))
	s.CPUQuota = readUint(filepath.Join(cpu, "cpu.cfs_quota_us")) // -1 reads as 0
	s.CPUShares = readUint(filepath.Join(cpu, "cpu.shares"))
	s.MemoryLimit = limit(readUint(filepath.Join(mem, "memory.limit_in_bytes")))
	s.MemoryReservation = limit(readUint(filepath.Join(mem, "memory.soft_limit_in_bytes")))
	s.MemorySwapLimit = limit(readUint(filepath.Join(mem, "memory.memsw.limit_in_bytes")))
	return s, nil
}

// ProcessStats counts what a cgroup's processes hold.
type ProcessStats struct {
	Processes, Threads, FileDescriptors, Sockets uint64
}

// ReadProcessStats lists the processes and threads directly in path (a
// container's cgroup is a leaf) and counts their open files and sockets
// through procRoot (/proc except in tests). A process that exits while it
// is read is skipped.
func ReadProcessStats(root, procRoot, path string) (ProcessStats, error) {
	var s ProcessStats
	dir, threads := filepath.Join(root, path), "cgroup.threads"
	if !IsCgroup2(root) {
		dir, threads = filepath.Join(root, "pids", path), "tasks"
	}
	pids, err := readLines(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return s, fmt.Errorf("%w: %s", ErrNoCgroup, path)
		}
		return s, fmt.Errorf("list processes of cgroup %s: %w", path, err)
	}
	tids, err := readLines(filepath.Join(dir, threads))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("list threads of cgroup %s: %w", path, err)
	}
	s.Processes, s.Threads = uint64(len(pids)), uint64(len(tids))
	for _, pid := range pids {
		fdDir := filepath.Join(procRoot, pid, "fd")
		entries, err := os.ReadDir(fdDir)
		if err != nil {
			continue // exited
		}
		s.FileDescriptors += uint64(len(entries))
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
				s.Sockets++
			}
		}
	}
	return s, nil
}

// SoftNoFile is the soft RLIMIT_NOFILE of a process, read from
// procRoot/PID/limits; -1 is unlimited.
func SoftNoFile(procRoot string, pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		if f[0] == "unlimited" {
			return -1, nil
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no \"Max open files\" line in /proc/%d/limits", pid)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func readFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// readUint reads a one-number cgroup file: "max", a negative number or a
// missing file read as 0 (callers treat 0 as "not set").
func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return parseLimit(string(bytes.TrimSpace(b)))
}

func parseLimit(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return v
}
