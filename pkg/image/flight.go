package image

import (
	"context"
	"fmt"
	"sync"
)

// flight runs one function per key at a time and gives its result to every
// caller that asked for the key meanwhile (pulls of one image, downloads of
// one blob, unpacks of one layer).
//
// Unlike x/sync/singleflight, the shared work does not die with the caller
// that happened to start it: it runs on a context detached from all callers
// and is cancelled only when every caller has given up. A caller that gives
// up gets its own context's error; the last one to give up waits until the
// cancelled work has returned.
type flight[T any] struct {
	mu    sync.Mutex
	calls map[string]*flightCall[T]
}

type flightCall[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

func (f *flight[T]) do(ctx context.Context, key string, fn func(ctx context.Context) (T, error)) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall[T]{}
	}
	c, ok := f.calls[key]
	if !ok {
		// Keep the caller's values (logger) but not its cancellation.
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flightCall[T]{done: make(chan struct{}), cancel: cancel}
		f.calls[key] = c
		go f.run(cctx, key, c, fn)
	}
	c.waiters++
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		f.mu.Lock()
		c.waiters--
		last := c.waiters == 0
		if last {
			c.cancel()
			// A caller arriving now must start afresh, not join work
			// that is being cancelled.
			if f.calls[key] == c {
				delete(f.calls, key)
			}
		}
		f.mu.Unlock()
		if last {
			// The last caller waits for the cancelled work to wind down,
			// so that when it returns nothing of it is still running or
			// half written.
			<-c.done
		}
		var zero T
		return zero, context.Cause(ctx)
	}
}

func (f *flight[T]) run(ctx context.Context, key string, c *flightCall[T], fn func(ctx context.Context) (T, error)) {
	defer func() {
		if r := recover(); r != nil {
			c.err = fmt.Errorf("panic in %s: %v", key, r)
		}
		c.cancel()
		f.mu.Lock()
		if f.calls[key] == c {
			delete(f.calls, key)
		}
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn(ctx)
}
