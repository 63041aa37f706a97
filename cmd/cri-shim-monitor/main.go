// Command cri-shim-monitor is the node's container monitor (see
// pkg/monitor): one process per node that creates containers with the OCI
// runtime, reaps them, records their exits and writes their logs. cri-shim
// starts it; it outlives cri-shim.
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
