// Package monitor is the node's container monitor: ONE process per node
// (cmd/cri-shim-monitor), not one per pod or per container, that
//
//   - runs the OCI runtime's create, so every container's init process
//     becomes its child (it is a child subreaper) and it alone reaps them;
//   - records each exit (code, signal, time) in a file the moment it
//     happens, whether or not cri-shim is running;
//   - holds the containers' stdout/stderr and writes the CRI log files;
//   - serves attach (live output, stdin, terminal resize).
//
// It survives cri-shim restarts and crashes: cri-shim only talks to it over
// a unix socket. It imports neither gRPC nor cri-api, so its memory stays
// small.
//
// Failure analysis, and why the design holds up:
//   - cri-shim dies: containers, logs and exit recording go on; cri-shim
//     reads the exit files and reconnects at start.
//   - the monitor dies: containers keep running. Their stdout/stderr are
//     FIFOs that the container side holds open read-write, so a write never
//     raises SIGPIPE; once the 64 KiB pipe buffer is full writers block until
//     a new monitor reopens the FIFOs (cri-shim restarts it at once) and the
//     log resumes with nothing lost. What is lost: exit codes of containers
//     that exit before the new monitor is up (they are reparented to init;
//     the new monitor reports them exited with code 255 and reason
//     "Unknown"), terminals (the pty master closes, the container gets
//     SIGHUP) and stdin (the writer end closes: EOF).
//   - both die: as above; a reboot clears --state and cri-shim's start-up
//     reports every container exited.
//
// Protocol: one JSON request per connection on <dir>/monitor.sock, answered
// with one JSON response; "events" keeps the connection open and streams
// exits as JSON lines; "attach" switches the connection to framed streams.
package monitor
