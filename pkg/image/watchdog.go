package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrStalled is returned (wrapped) when a registry transfer makes no
// progress for Options.ProgressTimeout or stays under Options.MinThroughput
// for Options.ThroughputWindow. It wraps context.DeadlineExceeded, so
// errdefs.IsDeadlineExceeded is true for it and it maps to DeadlineExceeded.
var ErrStalled = fmt.Errorf("image pull stalled: %w", context.DeadlineExceeded)

// watchdog guards one network operation (a manifest fetch, a blob
// download). Progress is reported by the HTTP transport, which finds the
// operation's progress tracker in the request context, so time spent outside
// network operations (unpacking) never counts as a stall.
type watchdog struct {
	timeout time.Duration
	minRate int64 // bytes per second
	window  time.Duration
}

type progressKey struct{}

// progress counts bytes received by one guarded operation.
type progress struct {
	mu    sync.Mutex
	last  time.Time
	total int64
}

func (p *progress) add(n int) {
	p.mu.Lock()
	p.total += int64(n)
	p.last = time.Now()
	p.mu.Unlock()
}

func (p *progress) snapshot() (time.Time, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.total
}

// run calls fn with a context that is cancelled with ErrStalled when the
// transfer stalls or crawls.
func (w watchdog) run(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	if w.timeout <= 0 && w.minRate <= 0 {
		return fn(ctx)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	p := &progress{last: start}
	ctx = context.WithValue(ctx, progressKey{}, p)

	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		w.watch(ctx, what, start, p, cancel, done)
	}()
	err := fn(ctx)
	close(done)
	<-stopped
	if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
		return cause
	}
	return err
}

func (w watchdog) watch(ctx context.Context, what string, start time.Time, p *progress, cancel context.CancelCauseFunc, done <-chan struct{}) {
	tick := w.timeout
	if w.minRate > 0 && (tick <= 0 || w.window < tick) {
		tick = w.window
	}
	tick = min(max(tick/5, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	type sample struct {
		at    time.Time
		total int64
	}
	var samples []sample
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case now := <-t.C:
			last, total := p.snapshot()
			if w.timeout > 0 && now.Sub(last) >= w.timeout {
				cancel(fmt.Errorf("%s: no data received for %s: %w", what, w.timeout, ErrStalled))
				return
			}
			if w.minRate <= 0 {
				continue
			}
			samples = append(samples, sample{now, total})
			// Keep the newest sample that is at least a window old as the
			// base of the average.
			for len(samples) > 1 && now.Sub(samples[1].at) >= w.window {
				samples = samples[1:]
			}
			if base := samples[0]; now.Sub(start) >= w.window && now.Sub(base.at) >= w.window {
				secs := now.Sub(base.at).Seconds()
				if rate := float64(total-base.total) / secs; rate < float64(w.minRate) {
					cancel(fmt.Errorf("%s: %.0f B/s over the last %s, under the minimum %d B/s: %w",
						what, rate, w.window, w.minRate, ErrStalled))
					return
				}
			}
		}
	}
}

// progressTransport reports response headers and body bytes to the
// progress tracker of the request's operation, if any.
type progressTransport struct {
	next http.RoundTripper
}

func (t progressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	p, _ := req.Context().Value(progressKey{}).(*progress)
	if p == nil || resp == nil {
		return resp, err
	}
	p.add(0)
	resp.Body = &countingBody{ReadCloser: resp.Body, p: p}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	p *progress
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.p.add(n)
	}
	return n, err
}
