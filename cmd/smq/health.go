package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/buffer"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/worker"
)

// pinger remembers the database's last answer for a second, so that health
// checks, which load balancers send often, cost the database little.
type pinger struct {
	db store.Store

	mu  sync.Mutex // guards at and err
	at  time.Time
	err error
}

func (p *pinger) ping(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) < time.Second {
		return p.err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p.err, p.at = p.db.Ping(ctx), time.Now()
	return p.err
}

// nodeHealth reports every layer of this node: the database and Temporal as
// reached from here, the buffer's gauges and flush, and the scheduler and
// janitor as this node's worker sees them.
func nodeHealth(db store.Store, buf store.Buffer, flusher *buffer.Flusher, w *worker.Worker) api.HealthFunc {
	p := &pinger{db: db}
	return func(ctx context.Context) api.NodeHealth {
		healthy := api.Layer{Status: api.Healthy}
		var l api.Layers
		l.Producer, l.Consumer, l.Database = healthy, healthy, healthy
		dbErr := p.ping(ctx)
		if dbErr != nil {
			l.Database = api.Layer{Status: api.Down, Reason: dbErr.Error()}
			l.Consumer = api.Layer{Status: api.Down, Reason: "database unreachable"}
			l.Producer = api.Layer{Status: api.Degraded, Reason: "database unreachable: creates wait in the buffer"}
		}

		bs, fs := buf.Stats(), flusher.Stats()
		bl := healthy
		switch {
		case bs.Failed != "":
			bl = api.Layer{Status: api.Down, Reason: bs.Failed}
			l.Producer = api.Layer{Status: api.Down, Reason: "the write-ahead log failed: creates get 503 until the node restarts"}
		case bs.Depth >= bs.MaxDepth || bs.Bytes >= bs.MaxBytes:
			bl = api.Layer{Status: api.Down, Reason: "buffer full: creates get 429"}
			l.Producer = api.Layer{Status: api.Degraded, Reason: "buffer full"}
		case fs.LastError != "":
			bl = api.Layer{Status: api.Degraded, Reason: "flush failing: " + fs.LastError}
		case float64(bs.Depth) > 0.8*float64(bs.MaxDepth):
			bl = api.Layer{Status: api.Degraded, Reason: "buffer over 80% full"}
		}
		l.Buffer = api.NewBufferLayer(bl, bs, fs)

		st := w.Status()
		l.Temporal = healthy
		if verdict, reason := st.Health(time.Now()); verdict != worker.Healthy {
			l.Temporal = api.Layer{Status: api.Degraded, Reason: reason}
		}
		if !st.TemporalReachable {
			l.Temporal = api.Layer{Status: api.Down, Reason: "temporal unreachable: " + st.TemporalError}
		}
		l.Scheduler = loopLayer(st, activities.LoopScheduler)
		l.Janitor = loopLayer(st, activities.LoopJanitor)

		h := api.NodeHealth{Ready: dbErr == nil && bs.Failed == "", Layers: l}
		switch {
		case dbErr != nil:
			h.NotReady = "database unreachable: " + dbErr.Error()
		case bs.Failed != "":
			h.NotReady = "buffer: " + bs.Failed
		}
		return h
	}
}

// loopLayer judges a region loop. The loop runs on one node of the region,
// maybe not this one: without Temporal nobody can know it runs, so it is
// degraded; with Temporal it is healthy unless it failed here lately.
func loopLayer(st worker.Status, name string) api.Layer {
	if !st.TemporalReachable {
		return api.Layer{Status: api.Degraded, Reason: "temporal unreachable: the " + name + " may not be running"}
	}
	loop := st.Loops[name]
	switch {
	case !loop.Running:
		return api.Layer{Status: api.Healthy, Reason: "runs on another node of the region, or starting"}
	case loop.LastError != "" && time.Since(loop.LastErrorAt) < time.Minute:
		return api.Layer{Status: api.Degraded, Reason: fmt.Sprintf("last error %s ago: %s", time.Since(loop.LastErrorAt).Round(time.Second), loop.LastError)}
	case time.Since(loop.LastHeartbeat) > 30*time.Second:
		return api.Layer{Status: api.Degraded, Reason: "no heartbeat for " + time.Since(loop.LastHeartbeat).Round(time.Second).String()}
	}
	return api.Layer{Status: api.Healthy, Reason: "running on this node"}
}

// registerNodeMetrics exposes the buffer's gauges, the flush's counters and
// the scheduler's lateness on reg, and returns the hook that observes
// lateness.
func registerNodeMetrics(reg prometheus.Registerer, buf store.Buffer, flusher *buffer.Flusher) func(store.Promoted) {
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("smq_buffer_depth", "Messages in this node's buffer, in flight included.", func() float64 { return float64(buf.Stats().Depth) })
	gauge("smq_buffer_bytes", "Payload bytes in this node's buffer.", func() float64 { return float64(buf.Stats().Bytes) })
	gauge("smq_wal_bytes", "Size of the write-ahead log on disk.", func() float64 { return float64(buf.Stats().WALBytes) })
	counter("smq_wal_syncs_total", "Group writes of the write-ahead log, each synced to disk: creates per sync is how many shared one.",
		func() float64 { return float64(buf.Stats().WALSyncs) })
	counter("smq_wal_sync_seconds_total", "Time those group writes took, Badger's commit and the fsync after it: over smq_wal_syncs_total, the mean.",
		func() float64 { return buf.Stats().WALSyncTime.Seconds() })
	counter("smq_flushed_total", "Messages flushed to the database.", func() float64 { return float64(flusher.Stats().Flushed) })
	counter("smq_flush_errors_total", "Failed flushes.", func() float64 { return float64(flusher.Stats().Errors) })
	gauge("smq_flush_last_duration_seconds", "Duration of the last flush.", func() float64 { return flusher.Stats().LastDuration.Seconds() })
	gauge("smq_flush_batch_size", "Current flush batch size.", func() float64 { return float64(flusher.Stats().BatchSize) })
	lateness := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "smq_scheduler_lateness_seconds",
		Help:    "How late each message became ready (promoted, or leased by a poll as soon as due), relative to its scheduled time.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	reg.MustRegister(lateness)
	promoted := prometheus.NewCounter(prometheus.CounterOpts{Name: "smq_promoted_total",
		Help: "Messages made ready on this node: promoted by the scheduler, or leased by a poll as soon as due."})
	reg.MustRegister(promoted)
	return func(p store.Promoted) {
		promoted.Add(float64(p.Count))
		for _, d := range p.Lateness {
			lateness.Observe(d.Seconds())
		}
	}
}

// queueDepth is a collector of smq_queue_depth{channel,status}. Counting
// reads the whole messages table, so a scrape reuses a count up to 15 s old.
type queueDepth struct {
	db   *postgres.Store
	desc *prometheus.Desc

	mu     sync.Mutex // guards at and counts
	at     time.Time
	counts map[[2]string]int64
}

func newQueueDepth(db *postgres.Store) *queueDepth {
	return &queueDepth{db: db, desc: prometheus.NewDesc("smq_queue_depth",
		"Messages in the database by channel and status (counted at most every 15 s).", []string{"channel", "status"}, nil)}
}

func (q *queueDepth) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *queueDepth) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	if time.Since(q.at) > 15*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if counts, err := q.db.MessageCounts(ctx); err == nil {
			q.counts, q.at = counts, time.Now()
		}
		cancel()
	}
	counts := q.counts
	q.mu.Unlock()
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
