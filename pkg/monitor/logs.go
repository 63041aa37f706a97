package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxLogLine is where long lines are split into partial (P) entries: the
// CRI log format's limit, which kubelet reassembles.
const maxLogLine = 16 * 1024

// logWriter appends CRI-format lines to a container's log file:
//
//	2016-10-06T00:17:09.669794202Z stdout F the line
//
// Both streams of a container share one writer.
type logWriter struct {
	mu   sync.Mutex
	f    *os.File // nil: discard
	dir  string
	path string
	buf  []byte
}

func openLog(dir, path string) (*logWriter, error) {
	w := &logWriter{dir: dir, path: path}
	if path == "" {
		return w, nil
	}
	f, err := openLogFile(dir, path)
	if err != nil {
		return nil, err
	}
	w.f = f
	return w, nil
}

// openLogFile opens path for appending without following any symlink: with
// dir set, path must resolve beneath it (a symlink planted in the pod's log
// directory must not redirect writes elsewhere).
func openLogFile(dir, path string) (*os.File, error) {
	flags := unix.O_WRONLY | unix.O_APPEND | unix.O_CREAT | unix.O_CLOEXEC | unix.O_NOFOLLOW
	if dir == "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("create log directory: %w", err)
		}
		return os.OpenFile(path, flags, 0o640)
	}
	rel := path
	if filepath.IsAbs(path) {
		var err error
		if rel, err = filepath.Rel(dir, path); err != nil {
			return nil, err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open log directory %s: %w", dir, err)
	}
	defer root.Close()
	if d := filepath.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create log directory %s: %w", d, err)
		}
	}
	dirFile, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer dirFile.Close()
	fd, err := unix.Openat2(int(dirFile.Fd()), rel, &unix.OpenHow{
		Flags:   uint64(flags),
		Mode:    0o640,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("open log file %s in %s: %w", rel, dir, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}

// reopen switches to a new file at the same path (kubelet renamed the old
// one for rotation).
func (w *logWriter) reopen() error {
	if w.path == "" {
		return nil
	}
	f, err := openLogFile(w.dir, w.path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	old := w.f
	w.f = f
	w.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// write appends one entry; one write(2) per entry so concurrent readers
// (kubelet's log reader) never see a torn line.
func (w *logWriter) write(ts time.Time, stream string, partial bool, content []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	tag := " F "
	if partial {
		tag = " P "
	}
	b := ts.UTC().AppendFormat(w.buf[:0], time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, tag...)
	b = append(b, content...)
	b = append(b, '\n')
	w.f.Write(b) // a full disk loses lines, not the container
	if cap(b) <= 2*maxLogLine {
		w.buf = b[:0]
	} else {
		w.buf = nil
	}
}

// bufPool holds read buffers; a stream only holds one while data is ready,
// so idle containers cost no buffer memory.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// stream copies one output of a container (a FIFO or a pty master) to the
// log and to attached clients.
type stream struct {
	name    string // "stdout" or "stderr"
	f       *os.File
	log     *logWriter
	partial []byte // bytes after the last newline, not yet logged
	fanout  *fanout
	frame   byte
}

// run copies until EOF (every writer, i.e. every process of the container,
// has gone), EIO (a pty whose other side closed) or until the file is
// closed.
func (s *stream) run(done func()) {
	defer done()
	defer s.flush()
	rc, err := s.f.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n int
		var rerr error
		bp := bufPool.Get().(*[]byte)
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), *bp)
			return rerr != unix.EAGAIN
		})
		if n > 0 {
			s.consume((*bp)[:n])
		}
		bufPool.Put(bp)
		switch {
		case n > 0, errors.Is(rerr, unix.EINTR):
			continue
		case err != nil, rerr != nil, n == 0:
			return
		}
	}
}

func (s *stream) consume(data []byte) {
	now := time.Now()
	if s.fanout != nil {
		s.fanout.send(s.frame, data)
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.partial = append(s.partial, data...)
			for len(s.partial) >= maxLogLine {
				s.log.write(now, s.name, true, s.partial[:maxLogLine])
				s.partial = s.partial[maxLogLine:]
			}
			if len(s.partial) == 0 {
				s.partial = nil // release the backing array
			}
			return
		}
		line := data[:i]
		data = data[i+1:]
		if len(s.partial) > 0 {
			line = append(s.partial, line...)
			s.partial = nil
		}
		for len(line) > maxLogLine {
			s.log.write(now, s.name, true, line[:maxLogLine])
			line = line[maxLogLine:]
		}
		s.log.write(now, s.name, false, line)
	}
}

// flush logs a last line that had no newline.
func (s *stream) flush() {
	if len(s.partial) > 0 {
		s.log.write(time.Now(), s.name, false, s.partial)
		s.partial = nil
	}
}
