package ipam

import (
	"errors"
	"net/netip"
)

// Attachment is the key of a reservation: one interface of one container, as
// CNI names it (CNI_CONTAINERID, CNI_IFNAME).
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// Reservation is one address held by one attachment during one boot.
type Reservation struct {
	IP         netip.Addr `json:"ip"`
	Attachment Attachment `json:"attachment"`
	BootID     string     `json:"bootID"`
}

// ErrReserved is returned by Store.Reserve when the address is already held.
var ErrReserved = errors.New("address already reserved")

// Store persists reservations. Callers hold Lock around every sequence of
// calls; implementations need not be safe without it.
type Store interface {
	// Lock takes the store's exclusive lock (across processes for a disk store).
	Lock() error
	Unlock() error

	// Reserve records r; ErrReserved if r.IP is already held.
	Reserve(r Reservation) error
	// Get returns the reservation holding ip, if any.
	Get(ip netip.Addr) (Reservation, bool, error)
	// ByAttachment returns the reservations of a.
	ByAttachment(a Attachment) ([]Reservation, error)
	// Release removes every reservation of a; absent is not an error.
	Release(a Attachment) error
	// Remove drops r if r.Attachment still holds r.IP (for sweeps over List,
	// which must also reach addresses whose attachment is unknown).
	Remove(r Reservation) error
	// List returns every reservation.
	List() ([]Reservation, error)

	// LastReserved and SetLastReserved keep the round-robin cursor of a range.
	LastReserved(rangeID string) (netip.Addr, error)
	SetLastReserved(rangeID string, ip netip.Addr) error

	// Epoch and SetEpoch keep the boot ID the reservations belong to, so a
	// reboot is noticed with one read instead of a scan.
	Epoch() (string, error)
	SetEpoch(bootID string) error
}
