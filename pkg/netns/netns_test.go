package netns

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
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

func TestNewInUserNS(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	path, userPath := filepath.Join(dir, "net"), filepath.Join(dir, "user")
	mapping := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if err := NewInUserNS(path, userPath, []string{"sleep", "1000"}, mapping, mapping); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(path); Remove(userPath) })
	if !IsPinned(path) || !IsPinned(userPath) {
		t.Fatalf("not pinned: net %v, user %v", IsPinned(path), IsPinned(userPath))
	}

	// The network namespace's owner is the pinned user namespace.
	nsf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	owner, err := unix.IoctlRetInt(int(nsf.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS: %v", err)
	}
	defer unix.Close(owner)
	var got, want unix.Stat_t
	if err := unix.Fstat(owner, &got); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(userPath, &want); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino || got.Dev != want.Dev {
		t.Errorf("the network namespace's owner is user namespace %d, want the pinned %d", got.Ino, want.Ino)
	}

	// A process in the pinned user namespace sees the mappings, with
	// setgroups allowed (containers set supplementary groups).
	for file, wantContent := range map[string]string{"uid_map": "0 100000 65536", "gid_map": "0 100000 65536", "setgroups": "allow"} {
		out, err := exec.Command("nsenter", "--user="+userPath, "--net="+path, "cat", "/proc/self/"+file).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		if g := strings.Join(strings.Fields(string(out)), " "); g != wantContent {
			t.Errorf("%s inside: %q, want %q", file, g, wantContent)
		}
	}

	// Loopback is up.
	if err := Do(path, func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			ln.Close()
		}
		return err
	}); err != nil {
		t.Errorf("listen on loopback inside: %v", err)
	}

	// A second namespace on the same pins fails and leaves the first.
	if err := NewInUserNS(path, userPath, []string{"sleep", "1000"}, mapping, mapping); err == nil {
		t.Error("second NewInUserNS on the same pins succeeded")
	}
	if !IsPinned(path) || !IsPinned(userPath) {
		t.Error("a failed NewInUserNS removed another's pins")
	}
	// A holder that cannot start leaves nothing.
	p2, u2 := filepath.Join(dir, "net2"), filepath.Join(dir, "user2")
	if err := NewInUserNS(p2, u2, []string{filepath.Join(dir, "missing")}, mapping, mapping); err == nil {
		t.Error("NewInUserNS with a missing holder succeeded")
	}
	for _, p := range []string{p2, u2} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after a failed NewInUserNS: %v", p, err)
		}
	}

	for _, p := range []string{path, userPath} {
		if err := Remove(p); err != nil {
			t.Fatal(err)
		}
		if IsPinned(p) {
			t.Errorf("%s still pinned after Remove", p)
		}
	}
}
