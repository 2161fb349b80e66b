package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
)

// Workload 7: steady state. w7Rate single creates a second for w7Duration,
// each due w7Delay after it is sent, consumed as they fall due; end-to-end
// lateness is the time a consumer got a message minus its scheduled time.
// CPU is counted over the whole window, from /proc.
const (
	w7Rate      = 2000
	w7Duration  = 2 * time.Minute
	w7Delay     = time.Second
	w7Producers = 32
	w7Tick      = 10 * time.Millisecond
	w7Drain     = 15 * time.Second
)

// pacedLoad calls create w7Rate times a second for w7Duration from
// w7Producers callers, with the time each message is due; it returns the
// number sent, the create latencies, and how many sends fell behind the
// pace (queued more than a tick).
func pacedLoad(ctx context.Context, create func(ctx context.Context, due time.Time) error) (int, *dist, int, error) {
	type job struct{ planned time.Time }
	jobs := make(chan job, w7Rate)
	var (
		wg     sync.WaitGroup
		col    collector
		sent   atomic.Int64
		behind atomic.Int64
		mu     sync.Mutex
		first  error
	)
	for range w7Producers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, w7Rate*int(w7Duration/time.Second)/w7Producers+16)
			for j := range jobs {
				t0 := time.Now()
				if t0.Sub(j.planned) > w7Tick {
					behind.Add(1)
				}
				_, err := retryBusy(ctx, func() error { return create(ctx, t0.Add(w7Delay)) })
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t0))
				sent.Add(1)
			}
			col.addAll(lat)
		})
	}
	perTick := w7Rate * int(w7Tick) / int(time.Second)
	start := time.Now()
	ticker := time.NewTicker(w7Tick)
	for now := start; now.Sub(start) < w7Duration; now = <-ticker.C {
		for range perTick {
			jobs <- job{planned: now}
		}
	}
	ticker.Stop()
	close(jobs)
	wg.Wait()
	return int(sent.Load()), col.dist(), int(behind.Load()), first
}

// steadyRecorder gathers end-to-end lateness and the peak RSS of a process.
type steadyRecorder struct {
	mu       sync.Mutex
	late     dist
	received atomic.Int64
}

func (r *steadyRecorder) record(now time.Time, scheduled ...time.Time) {
	r.mu.Lock()
	for _, s := range scheduled {
		r.late.add(now.Sub(s))
	}
	r.mu.Unlock()
	r.received.Add(int64(len(scheduled)))
}

// sampleRSS samples a process's RSS every second until stop is closed and
// returns the last and the largest sample.
func sampleRSS(pid int, stop <-chan struct{}) (last, peak func() int64) {
	var l, p atomic.Int64
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			rss, _ := procRSS(pid)
			l.Store(rss)
			if rss > p.Load() {
				p.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return l.Load, p.Load
}

func (b *bench) w7Peers() {
	b.resetRiver()
	rec := &steadyRecorder{}
	stopWorkers := b.riverWorkers(riverTuned, func(job *river.Job[benchArgs]) { rec.record(time.Now(), job.ScheduledAt) })
	rc := b.riverInserter()
	self := os.Getpid()
	stopRSS := make(chan struct{})
	rssLast, rssPeak := sampleRSS(self, stopRSS)
	cpu0, pg0 := procCPU(self), b.postgresCPU()
	c0 := b.cpuNow()
	sent, createLat, behind, err := pacedLoad(b.ctx, func(ctx context.Context, due time.Time) error {
		_, err := rc.Insert(ctx, benchArgs{}, &river.InsertOpts{ScheduledAt: due})
		return err
	})
	b.must(err, "w7 river")
	_ = waitFor(b.ctx, w7Drain, 20*time.Millisecond, func() (bool, error) { return rec.received.Load() >= int64(sent), nil })
	cpu1, pg1 := procCPU(self), b.postgresCPU()
	split := b.cpuSince(c0)
	close(stopRSS)
	stopWorkers()
	rec.mu.Lock()
	rec.late.missing = max(sent-len(rec.late.samples), 0)
	r := steadyResult{Rate: w7Rate, Duration: w7Duration, Sent: sent, Received: int(rec.received.Load()),
		EndToEnd: rec.late.summary(), Create: createLat.summary(), CPUQueue: cpu1 - cpu0, CPUPostgres: pg1 - pg0,
		RSS: rssLast(), RSSMax: rssPeak(), CPU: split,
		Settings: riverTuned.String() + fmt.Sprintf("; Insert from %d callers; %d sends behind pace; CPU and RSS are the bench process's (River and the load generator share it)", w7Producers, behind)}
	rec.mu.Unlock()
	b.setSteady(sysRiverTuned, r)
}

func (b *bench) w7SMQ(n *smqNode) {
	n.reset()
	const channel = "w7"
	rec := &steadyRecorder{}
	ctx, cancel := context.WithCancel(b.ctx)
	waitConsumers := b.smqConsumers(ctx, n, channel, rec.record)
	stopRSS := make(chan struct{})
	rssLast, rssPeak := sampleRSS(n.pid(), stopRSS)
	cpu0, pg0 := procCPU(n.pid()), b.postgresCPU()
	c0 := b.cpuNow()
	go func() {
		select {
		case <-time.After(w7Duration / 2):
			n.profileDuring("w7 SMQ steady 2000 per s", 20)()
		case <-ctx.Done():
		}
	}()
	sent, createLat, behind, err := pacedLoad(b.ctx, func(ctx context.Context, due time.Time) error {
		return n.client.create(ctx, channel, due)
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		b.res.note(fmt.Sprintf("w7 SMQ: a create failed: %v", err))
	}
	_ = waitFor(b.ctx, w7Drain, 20*time.Millisecond, func() (bool, error) { return rec.received.Load() >= int64(sent), nil })
	cpu1, pg1 := procCPU(n.pid()), b.postgresCPU()
	split := b.cpuSince(c0)
	close(stopRSS)
	cancel()
	waitConsumers()
	rec.mu.Lock()
	rec.late.missing = max(sent-len(rec.late.samples), 0)
	r := steadyResult{Rate: w7Rate, Duration: w7Duration, Sent: sent, Received: int(rec.received.Load()),
		EndToEnd: rec.late.summary(), Create: createLat.summary(), CPUQueue: cpu1 - cpu0, CPUPostgres: pg1 - pg0,
		RSS: rssLast(), RSSMax: rssPeak(), CPU: split,
		Settings: fmt.Sprintf("single creates over HTTP from %d callers, each due %s after it is sent; %d long-polling consumers (max=%d, wait=%d s), acks by receipt in batches; %d sends behind pace",
			w7Producers, w7Delay, w4SMQPollers, w4SMQPollMax, w4SMQPollWait, behind)}
	rec.mu.Unlock()
	b.setSteady(sysSMQWAL, r)
}

func (b *bench) setSteady(system string, r steadyResult) {
	b.res.mu.Lock()
	b.res.steady[system] = r
	b.res.mu.Unlock()
	b.t.Logf("w7 %s: sent %d received %d; e2e p50 %s p99 %s max %s ms; create p50 %s p99 %s ms; CPU %s queue + %s postgres; RSS %d MiB (peak %d MiB)",
		system, r.Sent, r.Received, msOr(r.EndToEnd.P50, r.EndToEnd.P50ok, w7Drain), msOr(r.EndToEnd.P99, r.EndToEnd.P99ok, w7Drain), msOr(r.EndToEnd.Max, r.EndToEnd.Maxok, w7Drain),
		ms(r.Create.P50), ms(r.Create.P99), r.CPUQueue, r.CPUPostgres, r.RSS>>20, r.RSSMax>>20)
}
