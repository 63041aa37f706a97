package ipam

import (
	"net/netip"
	"sync"
)

// MemStore is an in-memory Store for tests. Failure injection goes through
// its fields.
type MemStore struct {
	mu      sync.Mutex
	byIP    map[netip.Addr]Reservation
	cursors map[string]netip.Addr
	epoch   string

	// ReserveErr, when set, is returned by Reserve (after Reserves calls succeeded).
	ReserveErr error
	Reserves   int
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{byIP: map[netip.Addr]Reservation{}, cursors: map[string]netip.Addr{}}
}

func (s *MemStore) Lock() error   { s.mu.Lock(); return nil }
func (s *MemStore) Unlock() error { s.mu.Unlock(); return nil }

func (s *MemStore) Reserve(r Reservation) error {
	if s.ReserveErr != nil {
		if s.Reserves == 0 {
			return s.ReserveErr
		}
		s.Reserves--
	}
	if _, ok := s.byIP[r.IP]; ok {
		return ErrReserved
	}
	s.byIP[r.IP] = r
	return nil
}

func (s *MemStore) Get(ip netip.Addr) (Reservation, bool, error) {
	r, ok := s.byIP[ip]
	return r, ok, nil
}

func (s *MemStore) ByAttachment(a Attachment) ([]Reservation, error) {
	var out []Reservation
	for _, r := range s.byIP {
		if r.Attachment == a {
			out = append(out, r)
		}
	}
	sortReservations(out)
	return out, nil
}

func (s *MemStore) Release(a Attachment) error {
	for ip, r := range s.byIP {
		if r.Attachment == a {
			delete(s.byIP, ip)
		}
	}
	return nil
}

func (s *MemStore) Remove(r Reservation) error {
	if cur, ok := s.byIP[r.IP]; ok && cur.Attachment == r.Attachment {
		delete(s.byIP, r.IP)
	}
	return nil
}

func (s *MemStore) List() ([]Reservation, error) {
	out := make([]Reservation, 0, len(s.byIP))
	for _, r := range s.byIP {
		out = append(out, r)
	}
	sortReservations(out)
	return out, nil
}

func (s *MemStore) LastReserved(rangeID string) (netip.Addr, error) { return s.cursors[rangeID], nil }

func (s *MemStore) SetLastReserved(rangeID string, ip netip.Addr) error {
	s.cursors[rangeID] = ip
	return nil
}

func (s *MemStore) Epoch() (string, error)       { return s.epoch, nil }
func (s *MemStore) SetEpoch(bootID string) error { s.epoch = bootID; return nil }
