package keylock

import (
	"testing"
	"time"
)

func TestMap(t *testing.T) {
	var k Map
	unlockA := k.Lock("a")
	// Another key is independent.
	other := make(chan struct{})
	go func() { k.Lock("b")(); close(other) }()
	select {
	case <-other:
	case <-time.After(5 * time.Second):
		t.Fatal("the lock of another key waited")
	}
	got := make(chan struct{})
	go func() {
		unlock := k.Lock("a")
		close(got)
		unlock()
	}()
	select {
	case <-got:
		t.Fatal("a second lock of the same key did not wait")
	case <-time.After(100 * time.Millisecond):
	}
	unlockA()
	<-got
	// Entries go when unused (the goroutine's unlock may still be running).
	for deadline := time.Now().Add(5 * time.Second); k.Held() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left, want none", k.Held())
		}
	}
}
