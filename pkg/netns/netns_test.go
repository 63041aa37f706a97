package netns

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates network namespaces)")
	}
}

func TestNewDoRemove(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "ns1")
	if err := New(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(path) })
	if !IsPinned(path) {
		t.Fatal("namespace is not pinned")
	}
	if err := New(path); err == nil {
		t.Fatal("second New on the same path succeeded")
	}
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	var inside string
	var ln net.Listener
	err := Do(path, func() error {
		inside, _ = os.Readlink("/proc/thread-self/ns/net")
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0") // works only if lo is up
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if inside == self || !strings.HasPrefix(inside, "net:") {
		t.Fatalf("Do ran in %q, outside %q", inside, self)
	}
	if after, _ := os.Readlink("/proc/thread-self/ns/net"); after != self {
		t.Fatalf("caller's thread moved to %q", after)
	}
	// The listener lives in the namespace: dialing it from here fails.
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("listener inside the namespace is reachable from outside")
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("pin still exists: %v", err)
	}
	if err := Remove(path); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}
