// Command cri-shim-monitor is the node's container monitor (see
// pkg/monitor): one process per node that creates containers with the OCI
// runtime, reaps them, records their exits and writes their logs. cri-shim
// starts it; it outlives cri-shim. `cri-shim-monitor exec-wait` is the
// small waiter cri-shim runs for each non-interactive exec.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/cri-shim/cri-shim/pkg/monitor"
)

func main() {
	// cri-shim-monitor exec-wait PIDFILE RESULTFILE RUNTIME ARGS...: one
	// exec's waiter (pkg/monitor.ExecWait), started by cri-shim per exec.
	if len(os.Args) > 4 && os.Args[1] == "exec-wait" {
		signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
		if err := monitor.ExecWait(os.Args[2], os.Args[3], os.Args[4:]); err != nil {
			fmt.Fprintln(os.Stderr, "cri-shim-monitor:", err)
			os.Exit(125)
		}
		return
	}
	dir := flag.String("dir", "/run/cri-shim/monitor", "state directory (socket, records, exit files)")
	flag.Parse()
	// A node-wide process that mostly sleeps: keep the heap tight.
	debug.SetGCPercent(50)
	// SIGTERM/SIGINT to cri-shim's group must not end us (we run in our own
	// session anyway); SIGPIPE from a vanished attach client neither.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	// Serve returns only when it cannot serve any more.
	err := monitor.Serve(*dir)
	fmt.Fprintln(os.Stderr, "cri-shim-monitor:", err)
	os.Exit(1)
}
