package pod

import "time"

// phases times the steps of one RunPodSandbox or CreateContainer for its
// log line ("Started pod sandbox", "Created container" at V(2)): where a
// slow pod start spends its time shows in the log, without a profiler.
type phases struct {
	start, last time.Time
	kv          []any
}

// newPhases starts timing when enabled (the log line will be written); a
// nil *phases records nothing, so RPCs pay for it only at that verbosity.
func newPhases(enabled bool) *phases {
	if !enabled {
		return nil
	}
	now := time.Now()
	return &phases{start: now, last: now}
}

// done records the time since the previous step (or the start) as name.
func (p *phases) done(name string) {
	if p == nil {
		return
	}
	now := time.Now()
	p.add(name, now.Sub(p.last))
	p.last = now
}

// add records d as name: a step that ran beside the others.
func (p *phases) add(name string, d time.Duration) {
	if p == nil {
		return
	}
	p.kv = append(p.kv, name, d.Round(10*time.Microsecond).String())
}

// keysAndValues are the recorded steps and the total, for klog.
func (p *phases) keysAndValues() []any {
	if p == nil {
		return nil
	}
	return append(p.kv, "total", time.Since(p.start).Round(10*time.Microsecond).String())
}
