package api

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smq/smq/store"
)

// metrics are the API's Prometheus collectors.
type metrics struct {
	created   *prometheus.CounterVec
	polls     *prometheus.CounterVec
	delivered *prometheus.CounterVec
	acked     *prometheus.CounterVec
	nacked    *prometheus.CounterVec
	duration  *prometheus.HistogramVec

	// durationMu guards durations, duration's children by operation and
	// status, kept so that a request need not format and hash its labels.
	durationMu sync.RWMutex
	durations  map[durationLabels]prometheus.Observer
}

type durationLabels struct {
	operation string
	status    int
}

// observeDuration records the duration of a request to operation answered
// with status.
func (m *metrics) observeDuration(operation string, status int, d time.Duration) {
	key := durationLabels{operation, status}
	m.durationMu.RLock()
	o, ok := m.durations[key]
	m.durationMu.RUnlock()
	if !ok {
		// Operations and statuses are few: the map stays small.
		o = m.duration.WithLabelValues(operation, strconv.Itoa(status))
		m.durationMu.Lock()
		m.durations[key] = o
		m.durationMu.Unlock()
	}
	o.Observe(d.Seconds())
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		durations: map[durationLabels]prometheus.Observer{},
		created: registerCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smq_messages_created_total",
			Help: "Messages created (dedup hits excluded), by channel.",
		}, []string{"channel"})),
		polls: registerCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smq_polls_total",
			Help: "Poll requests, by channel.",
		}, []string{"channel"})),
		delivered: registerCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smq_messages_polled_total",
			Help: "Messages leased to consumers by polls, by channel.",
		}, []string{"channel"})),
		acked: registerCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smq_messages_acked_total",
			Help: "Messages acked, by channel.",
		}, []string{"channel"})),
		nacked: registerCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smq_messages_nacked_total",
			Help: "Messages nacked (retried or dead-lettered), by the channel they were polled from.",
		}, []string{"channel"})),
		duration: registerCollector(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smq_http_request_duration_seconds",
			Help:    "HTTP request durations, by operation id and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"operation", "code"})),
	}
}

// count adds counts to c, by channel.
func count(c *prometheus.CounterVec, counts store.Counts) {
	for channel, n := range counts {
		c.WithLabelValues(channel).Add(float64(n))
	}
}

// registerCollector registers c on reg, or returns the collector already registered
// under its name (a second handler on the same registry, as in tests).
func registerCollector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// observe is the Huma middleware that records each operation's duration
// and names the operation for the access log.
func (s *server) observe(ctx huma.Context, next func(huma.Context)) {
	start := time.Now()
	op := ctx.Operation().OperationID
	if info := infoFrom(ctx.Context()); info != nil {
		info.operation = op
	}
	next(ctx)
	s.metrics.observeDuration(op, ctx.Status(), time.Since(start))
}
