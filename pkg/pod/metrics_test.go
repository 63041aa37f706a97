package pod

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BlockDeviceName names a block device by its /dev node: the node it gives
// has that device number; an unknown number stays a number.
func TestBlockDeviceName(t *testing.T) {
	entries, err := os.ReadDir("/sys/dev/block")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no block devices in /sys/dev/block (%v)", err)
	}
	checked := 0
	for _, e := range entries {
		var major, minor uint64
		if _, err := fmt.Sscanf(e.Name(), "%d:%d", &major, &minor); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		name := BlockDeviceName(major, minor)
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err != nil {
			continue // no node in this /dev (a container's)
		}
		if uint64(unix.Major(st.Rdev)) != major || uint64(unix.Minor(st.Rdev)) != minor {
			t.Errorf("BlockDeviceName(%d, %d) = %s, which is %d:%d", major, minor, name, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		checked++
	}
	if checked == 0 {
		t.Error("no block device name matched a /dev node")
	}
	if got := BlockDeviceName(4095, 4095); got != "4095:4095" {
		t.Errorf("an unknown device is named %q", got)
	}
}
