package image

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pull metrics. With a nil Registerer they are still
// counted, just not exported.
type metrics struct {
	pulls    *prometheus.CounterVec
	bytes    prometheus.Counter
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cri_shim_image_pulls_total",
			Help: "Image pulls, by result (success or failure).",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cri_shim_image_pull_bytes_total",
			Help: "Bytes of blobs downloaded from registries.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cri_shim_image_pull_duration_seconds",
			Help:    "Duration of image pulls, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14), // 50ms .. ~7min
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pulls, m.bytes, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("image metrics already registered (one Store per registerer): %w", err)
			}
			return nil, fmt.Errorf("register image metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observePull(err error, d time.Duration) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.pulls.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}
