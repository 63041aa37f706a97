package monitor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// recover resumes the containers a previous monitor process held: their
// logs are reopened and their exits watched. They are no longer our
// children (they were reparented to init when the old monitor died), so an
// exit is seen through a pidfd and its code is unknown.
func (s *Server) recover() {
	entries, _ := os.ReadDir(filepath.Join(s.dir, "containers"))
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || validID(id) != nil {
			continue
		}
		if err := s.recoverOne(id); err != nil {
			fmt.Fprintf(os.Stderr, "recover container %s: %v\n", id, err)
		}
	}
}

func (s *Server) recoverOne(id string) error {
	data, err := os.ReadFile(recordPath(s.dir, id))
	if err != nil {
		return err
	}
	c := &container{}
	if err := json.Unmarshal(data, &c.rec); err != nil {
		return err
	}
	s.mu.Lock()
	s.containers[id] = c
	s.mu.Unlock()
	if e, _ := ReadExit(s.dir, id); e != nil {
		c.exited = true
		return nil
	}
	alive := c.rec.Pid > 0 && unix.Kill(c.rec.Pid, 0) == nil && ProcessStartTime(c.rec.Pid) == c.rec.StartTime
	if !alive {
		s.writeExit(c, Exit{ID: id, Pid: c.rec.Pid, ExitCode: 255, FinishedAt: time.Now(), Reason: "Unknown"})
		return nil
	}
	if c.log, err = openLog(c.rec.LogDir, c.rec.LogPath); err != nil {
		return err
	}
	if c.rec.Fifos {
		for i, name := range []string{"stdout", "stderr"} {
			f, err := os.OpenFile(stdioFifo(s.dir, id, name), os.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				return err
			}
			c.streams = append(c.streams, &stream{name: name, f: f, log: c.log, fanout: &c.fan, frame: byte(FrameStdout + i)})
		}
	}
	s.oom.watch(c)
	s.startStreams(c)
	go s.watchPidfd(c)
	return nil
}

// watchPidfd records the exit of a container that is not our child.
func (s *Server) watchPidfd(c *container) {
	fd, err := unix.PidfdOpen(c.rec.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		s.writeExit(c, Exit{ID: c.rec.ID, Pid: c.rec.Pid, ExitCode: 255, FinishedAt: time.Now(), Reason: "Unknown"})
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if rc, err := f.SyscallConn(); err == nil {
		// Readable once the process has exited; the poller waits for it.
		rc.Read(func(fd uintptr) bool {
			n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return n > 0
		})
	}
	s.writeExit(c, Exit{ID: c.rec.ID, Pid: c.rec.Pid, ExitCode: 255, FinishedAt: time.Now(), Reason: "Unknown",
		OOMKilled: s.oomKilled(c)})
}
