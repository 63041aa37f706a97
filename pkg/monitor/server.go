package monitor

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// record is what the monitor persists per container, so a restarted monitor
// can resume its logs.
type record struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`
	StartTime uint64    `json:"startTime"` // /proc/<pid>/stat field 22, against pid reuse
	LogPath   string    `json:"logPath,omitempty"`
	LogDir    string    `json:"logDir,omitempty"`
	Fifos     bool      `json:"fifos"`
	Terminal  bool      `json:"terminal,omitempty"`
	StdinOnce bool      `json:"stdinOnce,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// CgroupDir is the container's memory cgroup directory, followed for
	// OOM kills; SystemdCgroup is how the runtime was called.
	CgroupDir     string `json:"cgroupDir,omitempty"`
	SystemdCgroup bool   `json:"systemdCgroup,omitempty"`
}

type container struct {
	rec     record
	log     *logWriter
	streams []*stream
	fan     fanout
	stdin   *os.File // pipe write end or pty master; nil without stdin
	console *os.File // pty master
	running sync.WaitGroup
	exited  bool
	// oomKilled is set by the OOM watcher; oomWd is its inotify watch.
	oomKilled atomic.Bool
	oomWd     int
}

// Server is the monitor process's state.
type Server struct {
	dir        string
	reaper     *reaper
	oom        *oomWatcher
	kmsg       *kmsgOOM
	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int]*container
	subs       map[chan Exit]bool
}

// Serve runs the monitor in dir until the listener fails. It refuses to
// start when another monitor already serves dir.
func Serve(dir string) error {
	if err := ensureDirs(dir); err != nil {
		return err
	}
	if c, err := net.Dial("unix", socketPath(dir)); err == nil {
		c.Close()
		return fmt.Errorf("a monitor already serves %s", dir)
	}
	// Container init processes are adopted by the nearest subreaper when
	// the runtime's create exits: us.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	s := &Server{dir: dir, containers: map[string]*container{}, byPid: map[int]*container{}, subs: map[chan Exit]bool{}}
	s.oom = newOOMWatcher()
	s.kmsg = newKmsgOOM("/dev/kmsg")
	s.reaper = newReaper(s.onExit)
	s.reaper.start()
	s.recover()

	os.Remove(socketPath(dir))
	l, err := net.Listen("unix", socketPath(dir))
	if err != nil {
		return err
	}
	os.WriteFile(monitorPidPath(dir), []byte(strconv.Itoa(os.Getpid())), 0o600)
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go s.handle(conn)
	}
}

func (s *Server) handle(conn net.Conn) {
	r := bufio.NewReader(conn)
	line, err := r.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		reply(conn, errorResponse(fmt.Errorf("bad request: %v: %w", err, errdefs.ErrInvalidArgument)))
		conn.Close()
		return
	}
	switch req.Op {
	case "events":
		s.events(conn)
		return
	case "attach":
		s.attach(conn, r, req)
		return
	}
	defer conn.Close()
	var resp Response
	switch req.Op {
	case "ping":
	case "create":
		if req.Create == nil {
			err = fmt.Errorf("create without parameters: %w", errdefs.ErrInvalidArgument)
			break
		}
		resp.Pid, err = s.create(req.Create)
	case "reopen":
		err = s.reopen(req.ID)
	case "forget":
		s.forget(req.ID)
	default:
		err = fmt.Errorf("unknown op %q: %w", req.Op, errdefs.ErrNotImplemented)
	}
	if err != nil {
		resp = errorResponse(err)
	}
	reply(conn, resp)
}

func reply(conn net.Conn, resp Response) {
	data, _ := json.Marshal(resp)
	conn.Write(append(data, '\n'))
}

func validID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid container ID %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// create runs the runtime's create for a bundle with stdio the monitor
// owns, and returns the container's init pid.
func (s *Server) create(req *CreateRequest) (pid int, err error) {
	if err := validID(req.ID); err != nil {
		return 0, err
	}
	s.mu.Lock()
	_, exists := s.containers[req.ID]
	s.mu.Unlock()
	if exists {
		return 0, fmt.Errorf("container %s is already monitored: %w", req.ID, errdefs.ErrAlreadyExists)
	}
	io := ioDir(s.dir, req.ID)
	if err := os.MkdirAll(io, 0o700); err != nil {
		return 0, err
	}
	c := &container{rec: record{ID: req.ID, LogPath: req.LogPath, LogDir: req.LogDir, Terminal: req.Terminal,
		StdinOnce: req.StdinOnce, CreatedAt: time.Now(), CgroupDir: req.CgroupDir, SystemdCgroup: req.SystemdCgroup}}
	var closeOnExit []*os.File // our copies of the container's ends
	defer func() {
		for _, f := range closeOnExit {
			f.Close()
		}
		if err != nil {
			c.closeFiles()
			os.RemoveAll(io)
		}
	}()
	if c.log, err = openLog(req.LogDir, req.LogPath); err != nil {
		return 0, err
	}

	files, ours, console, err := s.openStdio(c, req)
	closeOnExit = append(closeOnExit, ours...)
	if err != nil {
		return 0, err
	}
	if console != nil {
		defer console.Close()
	}

	runtimeLog := filepath.Join(io, "runtime.log")
	consolePath := ""
	if console != nil {
		consolePath = console.Path()
	}
	argv, op := runtimeCreateArgv(req, runtimeLog, pidFilePath(s.dir, req.ID), consolePath)
	bin, err := lookPath(req.RuntimeBinary)
	if err != nil {
		return 0, err
	}
	waitc, err := s.reaper.startProcess(bin, argv, &os.ProcAttr{Dir: req.Bundle, Files: files})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", req.RuntimeBinary, err)
	}
	var consoleErr chan error
	if req.Terminal {
		consoleErr = make(chan error, 1)
		go func() {
			var err error
			c.console, err = console.Receive(30 * time.Second)
			consoleErr <- err
		}()
	}
	ws := <-waitc
	if !ws.Exited() || ws.ExitStatus() != 0 {
		msg := runtimeError(runtimeLog)
		if req.Terminal {
			console.Close()
			<-consoleErr
		}
		s.cleanupRuntime(req)
		return 0, fmt.Errorf("%s %s %s failed: %s", req.RuntimeBinary, op, req.ID, msg)
	}
	if req.Terminal {
		if err := <-consoleErr; err != nil {
			s.cleanupRuntime(req)
			return 0, fmt.Errorf("receive the terminal of %s: %w", req.ID, err)
		}
		c.stdin = c.console
		c.streams = []*stream{{name: "stdout", f: c.console, log: c.log, fanout: &c.fan, frame: FrameStdout}}
	}
	data, err := os.ReadFile(pidFilePath(s.dir, req.ID))
	if err == nil {
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if err != nil {
		s.cleanupRuntime(req)
		return 0, fmt.Errorf("read the pid of %s: %w", req.ID, err)
	}
	c.rec.Pid = pid
	c.rec.StartTime = ProcessStartTime(pid)
	if err := writeJSONAtomic(recordPath(s.dir, req.ID), c.rec); err != nil {
		s.cleanupRuntime(req)
		return 0, err
	}
	s.oom.watch(c)
	s.startStreams(c)
	s.mu.Lock()
	s.containers[req.ID] = c
	s.byPid[pid] = c
	s.mu.Unlock()
	// It may have exited before it was registered.
	if ws, ok := s.reaper.takeOrphan(pid); ok {
		s.recordExit(c, ws, "")
	}
	return pid, nil
}

// openStdio makes the container's stdio: /dev/null, a console socket for a
// terminal, or FIFOs (stdout, stderr) and a stdin pipe whose monitor ends go
// to c. It returns the runtime's files and the container-side ends the
// monitor must close once the runtime has started (also on error).
func (s *Server) openStdio(c *container, req *CreateRequest) (files, ours []*os.File, console *Console, err error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	ours = append(ours, devnull)
	files = []*os.File{devnull, devnull, devnull}
	switch {
	case req.Terminal:
		if console, err = ListenConsole(); err != nil {
			return nil, ours, nil, err
		}
	case req.LogPath != "" || req.Stdin:
		c.rec.Fifos = true
		for i, name := range []string{"stdout", "stderr"} {
			containerEnd, monitorEnd, err := openFifo(stdioFifo(s.dir, req.ID, name))
			if err != nil {
				return nil, ours, nil, err
			}
			ours = append(ours, containerEnd)
			files[i+1] = containerEnd
			c.streams = append(c.streams, &stream{name: name, f: monitorEnd, log: c.log, fanout: &c.fan, frame: byte(FrameStdout + i)})
		}
		if req.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, ours, nil, err
			}
			ours = append(ours, r)
			files[0] = r
			c.stdin = w
		}
	}
	return files, ours, console, nil
}

// runtimeCreateArgv is the OCI runtime's command line for req: create (or
// run --detach), logging as JSON to runtimeLog, the pid to pidFile, a
// terminal through consolePath when set. op names the command for errors.
func runtimeCreateArgv(req *CreateRequest, runtimeLog, pidFile, consolePath string) (argv []string, op string) {
	argv = append([]string{req.RuntimeBinary}, runtimeGlobalArgs(req.RuntimeRoot, req.SystemdCgroup)...)
	argv = append(argv, "--log", runtimeLog, "--log-format", "json")
	op = "create"
	if req.Run {
		op = "run"
		argv = append(argv, "run", "--detach")
	} else {
		argv = append(argv, "create")
	}
	argv = append(argv, "--bundle", req.Bundle, "--pid-file", pidFile)
	if consolePath != "" {
		argv = append(argv, "--console-socket", consolePath)
	}
	return append(argv, req.ID), op
}

// cleanupRuntime removes what a failed create left in the runtime.
func (s *Server) cleanupRuntime(req *CreateRequest) {
	bin, err := lookPath(req.RuntimeBinary)
	if err != nil {
		return
	}
	argv := append([]string{req.RuntimeBinary}, runtimeGlobalArgs(req.RuntimeRoot, req.SystemdCgroup)...)
	waitc, err := s.reaper.startProcess(bin, append(argv, "delete", "--force", req.ID),
		&os.ProcAttr{Files: []*os.File{nil, nil, nil}})
	if err == nil {
		<-waitc
	}
}

func (s *Server) startStreams(c *container) {
	c.running.Add(len(c.streams))
	for _, st := range c.streams {
		go st.run(c.running.Done)
	}
	go func() {
		c.running.Wait()
		c.fan.closeAll()
	}()
}

// openFifo makes a FIFO and returns the container's end (read-write, so
// the pipe always has a reader and the container never gets SIGPIPE, even
// while no monitor runs) and the monitor's non-blocking read end.
func openFifo(path string) (containerEnd, monitorEnd *os.File, err error) {
	if err := unix.Mkfifo(path, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, nil, fmt.Errorf("make fifo %s: %w", path, err)
	}
	monitorEnd, err = os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	containerEnd, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		monitorEnd.Close()
		return nil, nil, err
	}
	return containerEnd, monitorEnd, nil
}

// Console is a console socket for the runtime's --console-socket: the
// runtime connects and passes the pty master. It lives in a fresh directory
// under /tmp, not under the state directory: a unix socket path is limited
// to 107 bytes, and state paths (bundles under a test's temp dir, say)
// easily exceed that.
type Console struct {
	ln  *net.UnixListener
	dir string
}

// ListenConsole makes a console socket.
func ListenConsole() (*Console, error) {
	dir, err := os.MkdirTemp("/tmp", "cri-shim-tty-")
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "c.sock"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &Console{ln: ln, dir: dir}, nil
}

// Path is what to pass as --console-socket.
func (c *Console) Path() string { return filepath.Join(c.dir, "c.sock") }

// Close removes the socket and its directory.
func (c *Console) Close() error {
	err := c.ln.Close()
	os.RemoveAll(c.dir)
	return err
}

// Receive waits for the runtime's pty master.
func (c *Console) Receive(timeout time.Duration) (*os.File, error) {
	return receiveConsole(c.ln, timeout)
}

// receiveConsole accepts the runtime's connection on the console socket
// and takes the pty master it passes.
func receiveConsole(ln *net.UnixListener, timeout time.Duration) (*os.File, error) {
	ln.SetDeadline(time.Now().Add(timeout))
	conn, err := ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("no file descriptor on the console socket: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("no file descriptor on the console socket: %v", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// runtimeError returns the last error the runtime logged.
func runtimeError(path string) string {
	data, _ := os.ReadFile(path)
	msg := "no error message"
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") && entry.Msg != "" {
			msg = entry.Msg
		}
	}
	return msg
}

// onExit is the reaper's callback for every reaped pid.
func (s *Server) onExit(pid int, ws unix.WaitStatus) bool {
	s.mu.Lock()
	c := s.byPid[pid]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	s.recordExit(c, ws, "")
	return true
}

func (s *Server) recordExit(c *container, ws unix.WaitStatus, reason string) {
	code, sig := exitCode(ws)
	oom := s.oomKilled(c)
	s.writeExit(c, Exit{ID: c.rec.ID, Pid: c.rec.Pid, ExitCode: code, Signal: sig, FinishedAt: time.Now(), Reason: reason, OOMKilled: oom})
}

// oomKilled reports whether the OOM killer took a process of c's cgroup,
// from three witnesses: the memory.events watch (while the cgroup existed),
// the cgroup itself (where it outlives its processes: cgroupfs), and the
// kernel log (exact, also once a systemd scope is gone).
func (s *Server) oomKilled(c *container) bool {
	dir := c.rec.CgroupDir
	if dir == "" {
		return false
	}
	fromLog := s.kmsg != nil && s.kmsg.killedIn(kernelCgroupPath(dir))
	return fromLog || c.oomKilled.Load() || OOMKills(dir) > 0
}

func (s *Server) writeExit(c *container, e Exit) {
	s.mu.Lock()
	if c.exited {
		s.mu.Unlock()
		return
	}
	c.exited = true
	delete(s.byPid, c.rec.Pid)
	s.mu.Unlock()
	if err := writeJSONAtomic(exitPath(s.dir, c.rec.ID), e); err != nil {
		fmt.Fprintf(os.Stderr, "record exit of %s: %v\n", c.rec.ID, err)
	}
	s.mu.Lock()
	for ch := range s.subs {
		select {
		case ch <- e:
		default:
			// A subscriber that does not keep up is cut off; it rescans
			// the exit files when it reconnects.
			delete(s.subs, ch)
			close(ch)
		}
	}
	s.mu.Unlock()
}

func (s *Server) events(conn net.Conn) {
	ch := make(chan Exit, 1024)
	s.mu.Lock()
	s.subs[ch] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.subs[ch] {
			delete(s.subs, ch)
			close(ch)
		}
		s.mu.Unlock()
		conn.Close()
	}()
	reply(conn, Response{})
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, conn); close(gone) }()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return
			}
			data, _ := json.Marshal(e)
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(append(data, '\n')); err != nil {
				return
			}
		case <-gone:
			return
		}
	}
}

func (s *Server) reopen(id string) error {
	s.mu.Lock()
	c := s.containers[id]
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("container %s is not monitored: %w", id, errdefs.ErrNotFound)
	}
	return c.log.reopen()
}

// forget drops a removed container: its streams, log file and records.
func (s *Server) forget(id string) {
	if validID(id) != nil {
		return
	}
	s.mu.Lock()
	c := s.containers[id]
	delete(s.containers, id)
	if c != nil {
		delete(s.byPid, c.rec.Pid)
	}
	s.mu.Unlock()
	if c != nil {
		s.oom.forget(c)
		c.closeFiles()
	}
	os.Remove(recordPath(s.dir, id))
	os.Remove(exitPath(s.dir, id))
	os.RemoveAll(ioDir(s.dir, id))
}

func (c *container) closeFiles() {
	for _, st := range c.streams {
		st.f.Close()
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	if c.log != nil {
		c.log.close()
	}
}

// attach streams a container's live output to the connection and feeds its
// stdin from it.
func (s *Server) attach(conn net.Conn, r *bufio.Reader, req Request) {
	s.mu.Lock()
	c := s.containers[req.ID]
	exited := c != nil && c.exited
	s.mu.Unlock()
	var err error
	switch {
	case req.Attach == nil:
		err = fmt.Errorf("attach without parameters: %w", errdefs.ErrInvalidArgument)
	case c == nil:
		err = fmt.Errorf("container %s is not monitored: %w", req.ID, errdefs.ErrNotFound)
	case exited:
		err = fmt.Errorf("container %s is not running: %w", req.ID, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		reply(conn, errorResponse(err))
		conn.Close()
		return
	}
	want := map[byte]bool{FrameExited: true, FrameStdout: req.Attach.Stdout, FrameStderr: req.Attach.Stderr}
	client := newAttachClient(conn, want)
	reply(conn, Response{})
	c.fan.add(client)
	go client.writeLoop()
	defer func() {
		c.fan.remove(client)
		client.stop()
	}()
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrameBytes {
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		switch hdr[0] {
		case FrameStdin:
			if req.Attach.Stdin && c.stdin != nil {
				c.stdin.Write(payload)
			}
		case FrameResize:
			if c.console != nil && len(payload) == 4 {
				ws := &unix.Winsize{Col: binary.BigEndian.Uint16(payload), Row: binary.BigEndian.Uint16(payload[2:])}
				unix.IoctlSetWinsize(int(c.console.Fd()), unix.TIOCSWINSZ, ws)
			}
		case FrameCloseIn:
			if req.Attach.Stdin && c.rec.StdinOnce && c.console == nil && c.stdin != nil {
				c.stdin.Close()
			}
		}
	}
	// StdinOnce: stdin closes when the first attach that had it ends.
	if req.Attach.Stdin && c.rec.StdinOnce && c.console == nil && c.stdin != nil {
		c.stdin.Close()
	}
}

// ProcessStartTime reads field 22 of /proc/<pid>/stat (0 if unreadable):
// with the pid, it names a process for good, since pids are reused.
func ProcessStartTime(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command may contain spaces and parentheses: skip past the last ')'.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

func lookPath(bin string) (string, error) {
	if strings.Contains(bin, "/") {
		return bin, nil
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, bin)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", bin)
}
