// Package keylock is one mutex per key (a sandbox, container or rootfs ID),
// made on first use and dropped when nobody holds or waits for it, so that
// operations on one object are serialised without holding up the others.
// pkg/pod and pkg/image both lock by ID; pkg/image cannot import pkg/pod,
// so the lock lives here.
package keylock

import "sync"

// Map is a set of per-key mutexes; the zero value is ready to use.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	mu   sync.Mutex
	refs int // holders and waiters
}

// Lock locks key and returns its unlock function.
func (k *Map) Lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*entry{}
	}
	e := k.m[key]
	if e == nil {
		e = &entry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// Held is how many keys are held or waited for: entries go when unused, so
// the map does not grow with every object that ever existed.
func (k *Map) Held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
