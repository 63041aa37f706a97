package pod

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Event is a container (or sandbox) lifecycle event for
// GetContainerEvents; pkg/cri adds the statuses.
type Event struct {
	Type        runtimeapi.ContainerEventType
	ContainerID string // the sandbox ID for sandbox events
	SandboxID   string
	Time        time.Time
}

// eventBus fans events out to subscribers; a subscriber that falls behind
// loses events rather than slowing the runtime down.
type eventBus struct {
	mu   sync.Mutex
	subs map[chan Event]bool
}

func newEventBus() *eventBus { return &eventBus{subs: map[chan Event]bool{}} }

// Subscribe returns a channel of events and a function that ends it.
func (m *Manager) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 256)
	b := m.events
	b.mu.Lock()
	b.subs[ch] = true
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if b.subs[ch] {
			delete(b.subs, ch)
			close(ch)
		}
		b.mu.Unlock()
	}
}

func (b *eventBus) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (b *eventBus) container(c *Container, t runtimeapi.ContainerEventType) {
	b.publish(Event{Type: t, ContainerID: c.ID, SandboxID: c.SandboxID, Time: time.Now()})
}

func (b *eventBus) sandbox(sb *Sandbox, t runtimeapi.ContainerEventType) {
	b.publish(Event{Type: t, ContainerID: sb.ID, SandboxID: sb.ID, Time: time.Now()})
}
