package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrExhausted is returned when a range has no free address.
var ErrExhausted = errors.New("no free address in range")

// maxProbe bounds the round-robin search in huge (IPv6) ranges; with fewer
// than maxProbe-1 reservations in the range a free address is always found.
const maxProbe = 1 << 20

// Allocator hands out addresses from ranges to attachments. Every method
// takes the store's lock, so separate processes may share one store.
type Allocator struct {
	Store Store
	// BootID identifies the current boot (/proc/sys/kernel/random/boot_id).
	BootID string
}

// Allocate returns one address per range for a, in the order of ranges. An
// attachment that already holds an address in a range keeps it (a retried
// ADD gets the same answer). On error nothing new stays reserved.
func (al *Allocator) Allocate(a Attachment, ranges []Range) ([]netip.Addr, error) {
	if err := al.Store.Lock(); err != nil {
		return nil, err
	}
	defer al.Store.Unlock()
	if err := al.sweepOldBoot(); err != nil {
		return nil, err
	}
	held, err := al.Store.ByAttachment(a)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ranges))
	var fresh []netip.Addr
	for _, r := range ranges {
		ip, ok := heldIn(held, r)
		if !ok {
			ip, err = al.reserve(a, r)
			if err != nil {
				for _, f := range fresh {
					if rerr := al.Store.Remove(Reservation{IP: f, Attachment: a, BootID: al.BootID}); rerr != nil {
						err = errors.Join(err, fmt.Errorf("undo reservation of %s: %w", f, rerr))
					}
				}
				return nil, err
			}
			fresh = append(fresh, ip)
		}
		out = append(out, ip)
	}
	return out, nil
}

func heldIn(held []Reservation, r Range) (netip.Addr, bool) {
	for _, h := range held {
		if r.Contains(h.IP) {
			return h.IP, true
		}
	}
	return netip.Addr{}, false
}

// reserve finds the next free address after the range's cursor.
func (al *Allocator) reserve(a Attachment, r Range) (netip.Addr, error) {
	last, err := al.Store.LastReserved(r.ID())
	if err != nil {
		return netip.Addr{}, err
	}
	probes := min(r.Size(), maxProbe)
	ip := last
	for range probes {
		ip = r.next(ip)
		err := al.Store.Reserve(Reservation{IP: ip, Attachment: a, BootID: al.BootID})
		if errors.Is(err, ErrReserved) {
			if al.reclaimStale(ip) {
				err = al.Store.Reserve(Reservation{IP: ip, Attachment: a, BootID: al.BootID})
			}
		}
		if errors.Is(err, ErrReserved) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		// A cursor that fails to persist only costs round-robin order; the
		// reservation itself stands.
		_ = al.Store.SetLastReserved(r.ID(), ip)
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("%w %s (%d addresses)", ErrExhausted, r.Subnet, r.Size())
}

// reclaimStale frees ip if its holder belongs to an earlier boot. The epoch
// sweep normally does that already; this covers a store whose epoch file
// was lost.
func (al *Allocator) reclaimStale(ip netip.Addr) bool {
	cur, ok, err := al.Store.Get(ip)
	if err != nil || !ok || cur.BootID == al.BootID || cur.BootID == "" {
		return false
	}
	return al.Store.Remove(cur) == nil
}

// sweepOldBoot drops every reservation of an earlier boot the first time the
// store is used in this boot.
func (al *Allocator) sweepOldBoot() error {
	epoch, err := al.Store.Epoch()
	if err != nil {
		return fmt.Errorf("read IPAM epoch: %w", err)
	}
	if epoch == al.BootID {
		return nil
	}
	all, err := al.Store.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range all {
		if r.BootID != al.BootID {
			errs = append(errs, al.Store.Remove(r))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reclaim reservations of an earlier boot: %w", err)
	}
	return al.Store.SetEpoch(al.BootID)
}

// Release frees every address of a. Releasing what is not held is not an
// error (CNI DEL is idempotent).
func (al *Allocator) Release(a Attachment) error {
	if err := al.Store.Lock(); err != nil {
		return err
	}
	defer al.Store.Unlock()
	return al.Store.Release(a)
}

// Lookup returns the addresses a holds in this boot.
func (al *Allocator) Lookup(a Attachment) ([]netip.Addr, error) {
	if err := al.Store.Lock(); err != nil {
		return nil, err
	}
	defer al.Store.Unlock()
	rs, err := al.Store.ByAttachment(a)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	for _, r := range rs {
		if r.BootID == al.BootID {
			ips = append(ips, r.IP)
		}
	}
	return ips, nil
}

// GC frees every reservation whose attachment is not in valid, and every
// reservation of an earlier boot. It keeps going on errors and returns them
// joined, with what it released.
func (al *Allocator) GC(valid map[Attachment]bool) ([]Reservation, error) {
	if err := al.Store.Lock(); err != nil {
		return nil, err
	}
	defer al.Store.Unlock()
	all, err := al.Store.List()
	if err != nil {
		return nil, err
	}
	var released []Reservation
	var errs []error
	for _, r := range all {
		if valid[r.Attachment] && r.BootID == al.BootID {
			continue
		}
		if err := al.Store.Remove(r); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", r.IP, err))
			continue
		}
		released = append(released, r)
	}
	if err := al.Store.SetEpoch(al.BootID); err != nil {
		errs = append(errs, err)
	}
	return released, errors.Join(errs...)
}

// Used counts the addresses held in r during this boot.
func (al *Allocator) Used(r Range) (uint64, error) {
	if err := al.Store.Lock(); err != nil {
		return 0, err
	}
	defer al.Store.Unlock()
	epoch, err := al.Store.Epoch()
	if err != nil || epoch != al.BootID {
		return 0, err // nothing of this boot yet
	}
	all, err := al.Store.List()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, res := range all {
		if r.Contains(res.IP) && res.BootID == al.BootID {
			n++
		}
	}
	return n, nil
}
