package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
)

// writeTree writes files (path -> content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadCgroupSpec(t *testing.T) {
	const cg = "/kubepods/pod1/ctr"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  CgroupSpec
	}{
		{"v1 limited", map[string]string{
			"cpu/" + cg + "/cpu.cfs_period_us":              "100000\n",
			"cpu/" + cg + "/cpu.cfs_quota_us":               "50000\n",
			"cpu/" + cg + "/cpu.shares":                     "512\n",
			"memory/" + cg + "/memory.limit_in_bytes":       "67108864\n",
			"memory/" + cg + "/memory.soft_limit_in_bytes":  "33554432\n",
			"memory/" + cg + "/memory.memsw.limit_in_bytes": "134217728\n",
		}, CgroupSpec{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 64 << 20, MemoryReservation: 32 << 20, MemorySwapLimit: 128 << 20}},
		{"v1 unlimited, no swap accounting", map[string]string{
			"cpu/" + cg + "/cpu.cfs_period_us":             "100000\n",
			"cpu/" + cg + "/cpu.cfs_quota_us":              "-1\n",
			"cpu/" + cg + "/cpu.shares":                    "2\n",
			"memory/" + cg + "/memory.limit_in_bytes":      "9223372036854771712\n",
			"memory/" + cg + "/memory.soft_limit_in_bytes": "9223372036854771712\n",
		}, CgroupSpec{CPUPeriod: 100000, CPUShares: 2}},
		{"v2 limited", map[string]string{
			"cgroup.controllers":    "cpu memory pids\n",
			cg + "/cpu.max":         "50000 100000\n",
			cg + "/cpu.weight":      "20\n", // kubelet's weight for 512 shares
			cg + "/memory.max":      "67108864\n",
			cg + "/memory.low":      "0\n",
			cg + "/memory.swap.max": "0\n",
		}, CgroupSpec{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 500, MemoryLimit: 64 << 20}},
		{"v2 unlimited", map[string]string{
			"cgroup.controllers":    "cpu memory\n",
			cg + "/cpu.max":         "max 100000\n",
			cg + "/cpu.weight":      "100\n",
			cg + "/memory.max":      "max\n",
			cg + "/memory.swap.max": "max\n",
		}, CgroupSpec{CPUPeriod: 100000, CPUShares: 2597}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			got, err := ReadCgroupSpec(root, cg)
			if err != nil || got != tc.want {
				t.Errorf("ReadCgroupSpec = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := ReadCgroupSpec(t.TempDir(), "/gone"); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("a missing cgroup: %v, want ErrNoCgroup", err)
	}
}

func TestReadProcessStats(t *testing.T) {
	const cg = "/pod/ctr"
	root, proc := t.TempDir(), t.TempDir()
	writeTree(t, root, map[string]string{
		"cgroup.controllers":   "pids\n",
		cg + "/cgroup.procs":   "10\n11\n99\n", // 99 exits before it is read
		cg + "/cgroup.threads": "10\n11\n12\n13\n",
	})
	for pid, fds := range map[string]map[string]string{
		"10": {"0": "/dev/null", "1": "pipe:[5]", "2": "pipe:[5]", "3": "socket:[77]"},
		"11": {"0": "/dev/null", "1": "socket:[78]"},
	} {
		dir := filepath.Join(proc, pid, "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, target := range fds {
			if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := ReadProcessStats(root, proc, cg)
	want := ProcessStats{Processes: 3, Threads: 4, FileDescriptors: 6, Sockets: 2}
	if err != nil || got != want {
		t.Errorf("ReadProcessStats = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ReadProcessStats(root, proc, "/gone"); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("a missing cgroup: %v, want ErrNoCgroup", err)
	}
}

func TestSoftNoFile(t *testing.T) {
	for _, tc := range []struct {
		limits  string
		want    int64
		wantErr bool
	}{
		{"Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n", 1024, false},
		{"Max open files            unlimited            unlimited            files\n", -1, false},
		{"Max processes             63413                63413                processes\n", 0, true},
	} {
		proc := t.TempDir()
		writeTree(t, proc, map[string]string{"7/limits": tc.limits})
		got, err := SoftNoFile(proc, 7)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("SoftNoFile(%q) = %d, %v; want %d (error %v)", tc.limits, got, err, tc.want, tc.wantErr)
		}
	}
}

// v1 blkio lists bytes and IOs per device and operation (Read, Write,
// Sync, Async, Discard, Total): one record per device, reads and writes
// only.
func TestBlkioDevices(t *testing.T) {
	e := func(major, minor uint64, op string, v uint64) *stats1.BlkIOEntry {
		return &stats1.BlkIOEntry{Major: major, Minor: minor, Op: op, Value: v}
	}
	bytes := []*stats1.BlkIOEntry{e(8, 0, "Read", 4096), e(8, 0, "Write", 8192), e(8, 0, "Total", 12288),
		e(254, 1, "Read", 512), e(254, 1, "Sync", 512)}
	ios := []*stats1.BlkIOEntry{e(8, 0, "Read", 1), e(8, 0, "Write", 2), e(254, 1, "Read", 1), e(259, 0, "Write", 3)}
	got := blkioDevices(bytes, ios)
	want := []DeviceIO{
		{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2},
		{Major: 254, Minor: 1, ReadBytes: 512, Reads: 1},
		{Major: 259, Minor: 0, Writes: 3},
	}
	if !slices.Equal(got, want) {
		t.Errorf("blkioDevices = %+v, want %+v", got, want)
	}
}
