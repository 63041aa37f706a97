package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// stores returns a fresh store of each kind, so every allocator test runs
// against the fake and the disk store alike.
func stores(t *testing.T) map[string]func() Store {
	return map[string]func() Store{
		"mem": func() Store { return NewMemStore() },
		"disk": func() Store {
			s, err := NewDiskStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func mustRange(t *testing.T, subnet string) Range {
	t.Helper()
	r, err := NewRange(netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func att(id string) Attachment { return Attachment{ContainerID: id, IfName: "eth0"} }

func TestAllocate(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			tests := []struct {
				desc string
				run  func(t *testing.T, al *Allocator)
			}{
				{"round robin skips gateway and does not reuse a released address at once", func(t *testing.T, al *Allocator) {
					r := mustRange(t, "10.0.0.0/29") // pods get .2 .. .6
					var got []string
					for i := range 3 {
						ips, err := al.Allocate(att(fmt.Sprint("c", i)), []Range{r})
						if err != nil {
							t.Fatal(err)
						}
						got = append(got, ips[0].String())
					}
					if fmt.Sprint(got) != "[10.0.0.2 10.0.0.3 10.0.0.4]" {
						t.Fatalf("got %v", got)
					}
					if err := al.Release(att("c0")); err != nil {
						t.Fatal(err)
					}
					ips, err := al.Allocate(att("c3"), []Range{r})
					if err != nil || ips[0].String() != "10.0.0.5" {
						t.Fatalf("after release got %v, %v; want 10.0.0.5 (round robin)", ips, err)
					}
					ips, err = al.Allocate(att("c4"), []Range{r})
					if err != nil || ips[0].String() != "10.0.0.6" {
						t.Fatalf("got %v, %v; want 10.0.0.6", ips, err)
					}
					// Wraps to the freed .2, never .7 (broadcast) or .1 (gateway).
					ips, err = al.Allocate(att("c5"), []Range{r})
					if err != nil || ips[0].String() != "10.0.0.2" {
						t.Fatalf("got %v, %v; want wrap to 10.0.0.2", ips, err)
					}
					if _, err := al.Allocate(att("c6"), []Range{r}); !errors.Is(err, ErrExhausted) {
						t.Fatalf("full range: err = %v, want ErrExhausted", err)
					}
				}},
				{"retried ADD gets the same address", func(t *testing.T, al *Allocator) {
					r := mustRange(t, "10.0.0.0/24")
					a1, err := al.Allocate(att("c"), []Range{r})
					if err != nil {
						t.Fatal(err)
					}
					a2, err := al.Allocate(att("c"), []Range{r})
					if err != nil || a1[0] != a2[0] {
						t.Fatalf("retry got %v, %v; want %v", a2, err, a1)
					}
				}},
				{"same container, other interface, gets its own address", func(t *testing.T, al *Allocator) {
					r := mustRange(t, "10.0.0.0/24")
					a1, _ := al.Allocate(Attachment{"c", "eth0"}, []Range{r})
					a2, _ := al.Allocate(Attachment{"c", "net1"}, []Range{r})
					if a1[0] == a2[0] {
						t.Fatalf("both interfaces got %v", a1[0])
					}
					if err := al.Release(Attachment{"c", "eth0"}); err != nil {
						t.Fatal(err)
					}
					held, _ := al.Lookup(Attachment{"c", "net1"})
					if len(held) != 1 || held[0] != a2[0] {
						t.Fatalf("releasing eth0 touched net1: %v", held)
					}
				}},
				{"dual stack gets one address per family; failure in the second releases the first", func(t *testing.T, al *Allocator) {
					v4 := mustRange(t, "10.0.0.0/24")
					v6 := mustRange(t, "fd00::/120")
					ips, err := al.Allocate(att("c"), []Range{v4, v6})
					if err != nil || len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() {
						t.Fatalf("got %v, %v", ips, err)
					}
					full := mustRange(t, "10.1.0.0/30")
					if _, err := al.Allocate(att("x"), []Range{full}); err != nil {
						t.Fatal(err)
					}
					if _, err := al.Allocate(att("y"), []Range{v4, full}); !errors.Is(err, ErrExhausted) {
						t.Fatalf("err = %v, want ErrExhausted", err)
					}
					if held, _ := al.Lookup(att("y")); len(held) != 0 {
						t.Fatalf("failed allocation left %v reserved", held)
					}
				}},
				{"release of unknown attachment is not an error", func(t *testing.T, al *Allocator) {
					if err := al.Release(att("nope")); err != nil {
						t.Fatal(err)
					}
				}},
				{"a new boot reclaims every old reservation without any release", func(t *testing.T, al *Allocator) {
					r := mustRange(t, "10.0.0.0/30") // one address only
					if _, err := al.Allocate(att("old"), []Range{r}); err != nil {
						t.Fatal(err)
					}
					al.BootID = "boot-2"
					ips, err := al.Allocate(att("new"), []Range{r})
					if err != nil || ips[0].String() != "10.0.0.2" {
						t.Fatalf("after reboot got %v, %v", ips, err)
					}
					if held, _ := al.Lookup(att("old")); len(held) != 0 {
						t.Fatalf("old boot's reservation survived: %v", held)
					}
				}},
				{"GC frees what is not valid and keeps what is", func(t *testing.T, al *Allocator) {
					r := mustRange(t, "10.0.0.0/24")
					for _, id := range []string{"a", "b", "c"} {
						if _, err := al.Allocate(att(id), []Range{r}); err != nil {
							t.Fatal(err)
						}
					}
					released, err := al.GC(map[Attachment]bool{att("b"): true})
					if err != nil || len(released) != 2 {
						t.Fatalf("GC released %v, %v; want a and c", released, err)
					}
					if n, _ := al.Used(r); n != 1 {
						t.Fatalf("Used = %d after GC, want 1", n)
					}
					if held, _ := al.Lookup(att("b")); len(held) != 1 {
						t.Fatalf("GC freed a valid attachment")
					}
				}},
			}
			for _, tt := range tests {
				t.Run(tt.desc, func(t *testing.T) {
					tt.run(t, &Allocator{Store: newStore(), BootID: "boot-1"})
				})
			}
		})
	}
}

func TestAllocateStoreFailureLeavesNothing(t *testing.T) {
	s := NewMemStore()
	al := &Allocator{Store: s, BootID: "b"}
	s.ReserveErr, s.Reserves = errors.New("disk full"), 1
	_, err := al.Allocate(att("c"), []Range{mustRange(t, "10.0.0.0/24"), mustRange(t, "fd00::/64")})
	if err == nil {
		t.Fatal("want error")
	}
	if all, _ := s.List(); len(all) != 0 {
		t.Fatalf("left %v reserved", all)
	}
}

// TestDiskStoreParallel runs allocations from many independent store handles,
// as separate plugin processes would (flock is per open file, so handles in
// one process exclude each other just like processes do).
func TestDiskStoreParallel(t *testing.T) {
	dir := t.TempDir()
	r := mustRange(t, "10.0.0.0/24")
	const n = 50
	var wg sync.WaitGroup
	got := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewDiskStore(dir)
			if err != nil {
				errs[i] = err
				return
			}
			ips, err := (&Allocator{Store: s, BootID: "b"}).Allocate(att(fmt.Sprint("c", i)), []Range{r})
			if err == nil {
				got[i] = ips[0]
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[got[i]] {
			t.Fatalf("address %s handed out twice", got[i])
		}
		seen[got[i]] = true
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, _ := NewDiskStore(dir)
			errs[i] = (&Allocator{Store: s, BootID: "b"}).Release(att(fmt.Sprint("c", i)))
		}()
	}
	wg.Wait()
	for _, sub := range []string{"ips", "attachments"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(entries) != 0 {
			t.Errorf("%s/ holds %d entries after releasing everything", sub, len(entries))
		}
	}
}

func TestDiskStoreTornFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewDiskStore(dir)
	al := &Allocator{Store: s, BootID: "b"}
	r := mustRange(t, "10.0.0.0/30")
	// A crash between create and write leaves an empty address file.
	if err := os.WriteFile(filepath.Join(dir, "ips", "10.0.0.2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEpoch("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := al.Allocate(att("c"), []Range{r}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("torn file must keep the address taken, got %v", err)
	}
	if released, err := al.GC(nil); err != nil || len(released) != 1 {
		t.Fatalf("GC released %v, %v; want the torn file", released, err)
	}
	if _, err := al.Allocate(att("c"), []Range{r}); err != nil {
		t.Fatal(err)
	}
}
