package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// Standalone writes the conflist for podCIDRs given on the command line,
// for a node without an API server (a standalone kubelet). It manages no
// routes: there are no other nodes to know of.
type Standalone struct {
	ConflistPath string
	Conflist     ConflistOptions
	PodCIDRs     []netip.Prefix
	// Resync is how often the file is checked (and rewritten if someone
	// changed or removed it).
	Resync  time.Duration
	Metrics *Metrics

	written atomic.Bool
}

// Ready returns nil once the conflist is written.
func (s *Standalone) Ready() error {
	if !s.written.Load() {
		return errors.New("CNI config not written yet")
	}
	return nil
}

// Run writes the conflist now and on every resync until ctx is done. A
// config the plugin would reject is an error at once; a failed write is
// logged and retried.
func (s *Standalone) Run(ctx context.Context) error {
	if len(s.PodCIDRs) == 0 {
		return errors.New("standalone mode needs at least one pod CIDR")
	}
	data, err := BuildConflist(s.Conflist, s.PodCIDRs)
	if err != nil {
		return fmt.Errorf("build CNI config: %w", err)
	}
	t := time.NewTicker(s.Resync)
	defer t.Stop()
	for {
		err := writeConflist(ctx, s.ConflistPath, data, s.Metrics, s.PodCIDRs)
		s.Metrics.observeSync(syncConflist, err)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Writing the CNI config failed, will retry", "path", s.ConflistPath)
		} else {
			s.written.Store(true)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
