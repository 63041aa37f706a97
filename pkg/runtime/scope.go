package runtime

import (
	"context"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// MoveToScope puts a running process into a new transient systemd scope
// unit in slice, through systemd's D-Bus API (what `systemd-run --scope`
// does for a new process). cri-shim's container monitor goes there under
// the systemd driver: it must outlive `systemctl stop/restart cri-shim`, and
// a process left in the service's cgroup would be counted, and with any
// KillMode but "process" killed, with the service.
func MoveToScope(ctx context.Context, pid int, unit, slice, description string) error {
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()
	props := []sddbus.Property{
		sddbus.PropDescription(description),
		sddbus.PropSlice(slice),
		sddbus.PropPids(uint32(pid)),
		// A scope that ends or fails is garbage-collected at once, so its
		// name is free again.
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
	}
	done := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, unit, "fail", props, done); err != nil {
		return fmt.Errorf("start scope %s for pid %d: %w", unit, pid, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("start scope %s for pid %d: job %s", unit, pid, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("start scope %s for pid %d: %w", unit, pid, ctx.Err())
	}
}
