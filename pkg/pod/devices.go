package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var errNotDevice = errors.New("not a device")

// deviceFromPath describes the host device at hostPath as containerPath.
func deviceFromPath(hostPath, containerPath string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(hostPath, &st); err != nil {
		return specs.LinuxDevice{}, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, errNotDevice
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path: containerPath, Type: typ,
		Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, nil
}

// resolveDevices turns CRI devices into OCI devices; a host path that is a
// directory brings every device under it.
func resolveDevices(devs []*runtimeapi.Device) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	for _, d := range devs {
		host, ctr := d.GetHostPath(), d.GetContainerPath()
		st, err := os.Stat(host)
		if err != nil {
			return nil, invalid("device %s: %v", host, err)
		}
		if !st.IsDir() {
			dev, err := deviceFromPath(host, ctr)
			if err != nil {
				return nil, invalid("device %s: %v", host, err)
			}
			out = append(out, dev)
			continue
		}
		err = filepath.WalkDir(host, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			dev, err := deviceFromPath(p, filepath.Join(ctr, strings.TrimPrefix(p, host)))
			if err == nil {
				out = append(out, dev)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("devices under %s: %w", host, err)
		}
	}
	return out, nil
}
