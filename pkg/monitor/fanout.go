package monitor

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// fanout sends a container's live output to attached clients as frames. A
// client that cannot keep up is dropped rather than allowed to stall the
// log writer behind it.
type fanout struct {
	mu      sync.Mutex
	clients map[*attachClient]bool
}

type attachClient struct {
	conn   net.Conn
	want   map[byte]bool
	frames chan []byte
	done   chan struct{} // closed by stop: send what is queued, then hang up
	once   sync.Once
}

func newAttachClient(conn net.Conn, want map[byte]bool) *attachClient {
	return &attachClient{conn: conn, want: want, frames: make(chan []byte, 256), done: make(chan struct{})}
}

func (f *fanout) add(c *attachClient) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients == nil {
		f.clients = map[*attachClient]bool{}
	}
	f.clients[c] = true
}

func (f *fanout) remove(c *attachClient) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.clients, c)
}

func (f *fanout) send(typ byte, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.clients {
		if !c.want[typ] {
			continue
		}
		select {
		case c.frames <- encodeFrame(typ, data):
		default:
			delete(f.clients, c)
			c.stop()
		}
	}
}

// closeAll ends every attach: the container's output is over.
func (f *fanout) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.clients {
		select {
		case c.frames <- encodeFrame(FrameExited, nil):
		default:
		}
		delete(f.clients, c)
		c.stop()
	}
}

func (c *attachClient) stop() { c.once.Do(func() { close(c.done) }) }

// writeLoop sends queued frames to the client until stopped.
func (c *attachClient) writeLoop() {
	defer c.conn.Close()
	write := func(fr []byte) bool {
		c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.conn.Write(fr)
		return err == nil
	}
	for {
		select {
		case fr := <-c.frames:
			if !write(fr) {
				return
			}
		case <-c.done:
			for {
				select {
				case fr := <-c.frames:
					if !write(fr) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

func encodeFrame(typ byte, data []byte) []byte {
	b := make([]byte, 5+len(data))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(data)))
	copy(b[5:], data)
	return b
}
