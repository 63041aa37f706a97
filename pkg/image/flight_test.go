package image

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlight(t *testing.T) {
	t.Run("callers share one run", func(t *testing.T) {
		var f flight[int]
		var runs atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				v, err := f.do(context.Background(), "k", func(context.Context) (int, error) {
					runs.Add(1)
					<-release
					return 42, nil
				})
				if v != 42 || err != nil {
					t.Errorf("do = %d, %v", v, err)
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		close(release)
		wg.Wait()
		if n := runs.Load(); n != 1 {
			t.Errorf("ran %d times, want 1", n)
		}
	})
	t.Run("work outlives the caller that started it", func(t *testing.T) {
		var f flight[int]
		ctx1, cancel1 := context.WithCancel(context.Background())
		started := make(chan struct{})
		release := make(chan struct{})
		fn := func(ctx context.Context) (int, error) {
			close(started)
			select {
			case <-release:
				return 7, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		errc := make(chan error, 1)
		go func() { _, err := f.do(ctx1, "k", fn); errc <- err }()
		<-started
		res := make(chan int, 1)
		go func() { v, _ := f.do(context.Background(), "k", fn); res <- v }()
		time.Sleep(20 * time.Millisecond)
		cancel1()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller got %v", err)
		}
		close(release)
		if v := <-res; v != 7 {
			t.Errorf("remaining caller got %d, want 7", v)
		}
	})
	t.Run("last caller leaving cancels and waits", func(t *testing.T) {
		var f flight[int]
		ctx, cancel := context.WithCancel(context.Background())
		var finished atomic.Bool
		started := make(chan struct{})
		go func() { <-started; cancel() }()
		_, err := f.do(ctx, "k", func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond)
			finished.Store(true)
			return 0, ctx.Err()
		})
		if !errors.Is(err, context.Canceled) || !finished.Load() {
			t.Errorf("err %v, work finished %v: want cancelled and wound down", err, finished.Load())
		}
	})
}
