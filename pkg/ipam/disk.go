package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// DiskStore keeps reservations as files under one directory:
//
//	lock                         flock(2) taken by Lock
//	epoch                        boot ID the reservations belong to
//	ips/<ip>                     one file per held address (JSON Reservation),
//	                             created with O_EXCL so two holders are impossible
//	attachments/<id>:<ifname>    the addresses of one attachment (JSON list), so
//	                             DEL finds them without a scan
//	cursors/<subnet>             round-robin cursor of a range
//
// Nothing is fsynced on purpose: reservations only matter within one boot,
// and a crash that loses the page cache is a reboot, after which they are
// void anyway. A crash between writing ips/<ip> and attachments/ leaves an
// address that only GC or the next boot reclaims; the window is one write.
type DiskStore struct {
	dir  string
	lock *os.File
}

// NewDiskStore opens (creating) a store in dir.
func NewDiskStore(dir string) (*DiskStore, error) {
	for _, d := range []string{dir, filepath.Join(dir, "ips"), filepath.Join(dir, "attachments"), filepath.Join(dir, "cursors")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create IPAM store directory: %w", err)
		}
	}
	return &DiskStore{dir: dir}, nil
}

// Dir is the store's directory.
func (s *DiskStore) Dir() string { return s.dir }

func (s *DiskStore) Lock() error {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open IPAM lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("lock IPAM store %s: %w", s.dir, err)
	}
	s.lock = f
	return nil
}

func (s *DiskStore) Unlock() error {
	if s.lock == nil {
		return errors.New("IPAM store is not locked")
	}
	// Closing the file drops the flock.
	err := s.lock.Close()
	s.lock = nil
	return err
}

func (s *DiskStore) ipPath(ip netip.Addr) string { return filepath.Join(s.dir, "ips", ip.String()) }

func (s *DiskStore) attachmentPath(a Attachment) string {
	// CNI forbids ':' in both container IDs and interface names, so the key
	// is unambiguous.
	return filepath.Join(s.dir, "attachments", a.ContainerID+":"+a.IfName)
}

func (s *DiskStore) Reserve(r Reservation) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(s.ipPath(r.IP), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ErrReserved
	}
	if err != nil {
		return fmt.Errorf("reserve %s: %w", r.IP, err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(s.ipPath(r.IP))
		return fmt.Errorf("reserve %s: %w", r.IP, werr)
	}
	ips, err := s.attachmentIPs(r.Attachment)
	if err == nil && !slices.Contains(ips, r.IP) {
		err = writeFileAtomic(s.attachmentPath(r.Attachment), mustJSON(append(ips, r.IP)))
	}
	if err != nil {
		os.Remove(s.ipPath(r.IP))
		return fmt.Errorf("record %s for %s: %w", r.IP, r.Attachment.ContainerID, err)
	}
	return nil
}

func (s *DiskStore) attachmentIPs(a Attachment) ([]netip.Addr, error) {
	data, err := os.ReadFile(s.attachmentPath(a))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if err := json.Unmarshal(data, &ips); err != nil {
		// Unreadable index: the ips/ files still say who holds what.
		return nil, nil
	}
	return ips, nil
}

func (s *DiskStore) Get(ip netip.Addr) (Reservation, bool, error) {
	data, err := os.ReadFile(s.ipPath(ip))
	if errors.Is(err, fs.ErrNotExist) {
		return Reservation{}, false, nil
	}
	if err != nil {
		return Reservation{}, false, fmt.Errorf("read reservation of %s: %w", ip, err)
	}
	var r Reservation
	if json.Unmarshal(data, &r) != nil {
		// Torn write (crash between create and write): held by nobody we
		// know. GC or the next boot reclaims it; until then it stays taken.
		return Reservation{IP: ip}, true, nil
	}
	r.IP = ip
	return r, true, nil
}

func (s *DiskStore) ByAttachment(a Attachment) ([]Reservation, error) {
	ips, err := s.attachmentIPs(a)
	if err != nil {
		return nil, fmt.Errorf("read reservations of %s/%s: %w", a.ContainerID, a.IfName, err)
	}
	var out []Reservation
	for _, ip := range ips {
		r, ok, err := s.Get(ip)
		if err != nil {
			return nil, err
		}
		if ok && r.Attachment == a {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *DiskStore) Release(a Attachment) error {
	rs, err := s.ByAttachment(a)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		if err := os.Remove(s.ipPath(r.IP)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(s.attachmentPath(a)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Remove drops the reservation r (if r.Attachment still holds it) and its
// entry in the attachment's index; the sweeps (GC, reboot) use it for files whose index
// may be missing.
func (s *DiskStore) Remove(r Reservation) error {
	cur, ok, err := s.Get(r.IP)
	if err != nil || !ok || cur.Attachment != r.Attachment {
		return err
	}
	err = os.Remove(s.ipPath(r.IP))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil || r.Attachment == (Attachment{}) {
		return err
	}
	ips, err := s.attachmentIPs(r.Attachment)
	if err != nil {
		return err
	}
	ips = slices.DeleteFunc(ips, func(ip netip.Addr) bool { return ip == r.IP })
	if len(ips) == 0 {
		err = os.Remove(s.attachmentPath(r.Attachment))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return err
	}
	return writeFileAtomic(s.attachmentPath(r.Attachment), mustJSON(ips))
}

func (s *DiskStore) List() ([]Reservation, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "ips"))
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	out := make([]Reservation, 0, len(entries))
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // not ours (an editor's temp file, say)
		}
		r, ok, err := s.Get(ip)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	sortReservations(out)
	return out, nil
}

func (s *DiskStore) cursorPath(rangeID string) string {
	return filepath.Join(s.dir, "cursors", strings.ReplaceAll(rangeID, "/", "_"))
}

func (s *DiskStore) LastReserved(rangeID string) (netip.Addr, error) {
	data, err := os.ReadFile(s.cursorPath(rangeID))
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, err
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(data)))
	if err != nil {
		return netip.Addr{}, nil // a bad cursor only costs round-robin order
	}
	return ip, nil
}

func (s *DiskStore) SetLastReserved(rangeID string, ip netip.Addr) error {
	return writeFileAtomic(s.cursorPath(rangeID), []byte(ip.String()))
}

func (s *DiskStore) Epoch() (string, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, "epoch"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(data)), err
}

func (s *DiskStore) SetEpoch(bootID string) error {
	return writeFileAtomic(filepath.Join(s.dir, "epoch"), []byte(bootID))
}

// writeFileAtomic replaces path with data so readers see the old or the new
// content, never a torn one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain data types
	}
	return data
}

func sortReservations(rs []Reservation) {
	slices.SortFunc(rs, func(a, b Reservation) int { return a.IP.Compare(b.IP) })
}
