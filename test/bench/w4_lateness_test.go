package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// Workload 4: delivery lateness, in two runs: w4Spread messages due evenly
// over 10 s, then a burst of w4Burst due within one second. Each run's
// messages are all created before its first due time; lateness is the
// time a consumer got a message minus its scheduled time.
const (
	w4Spread      = 10_000
	w4SpreadOver  = 10 * time.Second
	w4SpreadLead  = 4 * time.Second
	w4Burst       = 100_000
	w4BurstLead   = 8 * time.Second
	w4Bound       = 30 * time.Second // how long after the last due time receipts are awaited
	w4SMQPollers  = 4
	w4SMQPollMax  = 1000
	w4SMQPollWait = 20
)

// latenessPlan is when each message of a lateness run is due: n messages
// evenly over [t0, t0+over).
type latenessPlan struct {
	n    int
	over time.Duration
	t0   time.Time
}

func newLatenessPlan(n int, over, lead time.Duration) latenessPlan {
	return latenessPlan{n: n, over: over, t0: time.Now().Add(lead).Truncate(time.Millisecond)}
}

func (p latenessPlan) at(i int) time.Time {
	return p.t0.Add(time.Duration(i) * p.over / time.Duration(p.n))
}

func (p latenessPlan) end() time.Time { return p.t0.Add(p.over) }

// latenessRecorder gathers the lateness of received messages.
type latenessRecorder struct {
	plan     latenessPlan
	mu       sync.Mutex // guards late and lastRecv
	late     dist
	lastRecv time.Time
	got      atomic.Int64
	all      chan struct{} // closed when every message was received
}

func newLatenessRecorder(p latenessPlan) *latenessRecorder {
	return &latenessRecorder{plan: p, all: make(chan struct{})}
}

// record notes messages received at one instant.
func (r *latenessRecorder) record(received time.Time, scheduled ...time.Time) {
	r.mu.Lock()
	for _, s := range scheduled {
		r.late.add(received.Sub(s))
	}
	r.lastRecv = received
	r.mu.Unlock()
	if r.got.Add(int64(len(scheduled))) == int64(r.plan.n) {
		close(r.all)
	}
}

// wait returns once every message was received or bound has passed since
// the last due time.
func (r *latenessRecorder) wait(ctx context.Context, bound time.Duration) {
	select {
	case <-r.all:
	case <-time.After(time.Until(r.plan.end().Add(bound))):
	case <-ctx.Done():
	}
}

// result returns the run's figures; messages not received count as later
// than the bound.
func (r *latenessRecorder) result() latenessRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.late.missing = max(r.plan.n-len(r.late.samples), 0)
	run := latenessRun{Late: r.late.summary()}
	if r.late.missing == 0 {
		run.AllReceived, run.AllReceivedOK = r.lastRecv.Sub(r.plan.t0), true
	}
	return run
}

func (b *bench) w4Peers() {
	for _, s := range []riverSettings{riverTuned, riverDefaults} {
		res := latenessResult{Bound: w4Bound}
		for _, burst := range []bool{false, true} {
			b.resetRiver()
			plan := newLatenessPlan(w4Spread, w4SpreadOver, w4SpreadLead)
			if burst {
				plan = newLatenessPlan(w4Burst, time.Second, w4BurstLead)
			}
			rec := newLatenessRecorder(plan)
			stop := b.riverWorkers(s, func(job *river.Job[benchArgs]) { rec.record(time.Now(), job.ScheduledAt) })
			start := time.Now()
			rc := b.riverInserter()
			for lo := 0; lo < plan.n; lo += 1000 {
				params := make([]river.InsertManyParams, 0, 1000)
				for i := lo; i < min(lo+1000, plan.n); i++ {
					params = append(params, river.InsertManyParams{Args: benchArgs{N: i}, InsertOpts: &river.InsertOpts{ScheduledAt: plan.at(i)}})
				}
				_, err := rc.InsertManyFast(b.ctx, params)
				b.must(err, "w4 river insert")
			}
			b.analyze(b.riverDB, "river_job")
			created := time.Since(start)
			time.Sleep(time.Until(plan.t0))
			c0 := b.cpuNow()
			rec.wait(b.ctx, w4Bound)
			cpu := b.cpuSince(c0)
			stop()
			run := rec.result()
			run.CPU = cpu
			run.Settings = fmt.Sprintf("created with InsertManyFast in %s, the first due time %s after the start",
				created.Round(time.Millisecond), plan.t0.Sub(start).Round(time.Millisecond))
			if burst {
				res.Burst = run
			} else {
				res.Spread = run
			}
		}
		res.Settings = s.String()
		b.setLateness(s.Name, res)
	}

	res := latenessResult{Bound: w4Bound, Settings: fmt.Sprintf("%d consumers, %d rows per take (DELETE … RETURNING), a consumer sleeps %s after a short take",
		pgqConsumers, pgqBatch, pgqPollEvery)}
	for _, burst := range []bool{false, true} {
		b.resetPGQ()
		plan := newLatenessPlan(w4Spread, w4SpreadOver, w4SpreadLead)
		if burst {
			plan = newLatenessPlan(w4Burst, time.Second, w4BurstLead)
		}
		rec := newLatenessRecorder(plan)
		ctx, cancel := context.WithCancel(b.ctx)
		wait := pgqConsume(ctx, b.pgqDB, func(scheduled, taken time.Time) { rec.record(taken, scheduled) })
		start := time.Now()
		rows := make([][]any, plan.n)
		for i := range rows {
			rows[i] = []any{"w4", `{"n":1}`, plan.at(i)}
		}
		_, err := b.pgqDB.CopyFrom(b.ctx, pgx.Identifier{"jobs"}, []string{"channel", "payload", "scheduled_at"}, pgx.CopyFromRows(rows))
		b.must(err, "w4 copy")
		b.analyze(b.pgqDB, "jobs")
		created := time.Since(start)
		time.Sleep(time.Until(plan.t0))
		c0 := b.cpuNow()
		rec.wait(b.ctx, w4Bound)
		cpu := b.cpuSince(c0)
		cancel()
		wait()
		run := rec.result()
		run.CPU = cpu
		run.Settings = fmt.Sprintf("created with COPY in %s", created.Round(time.Millisecond))
		if burst {
			res.Burst = run
		} else {
			res.Spread = run
		}
	}
	b.setLateness(sysPGQ, res)
}

func (b *bench) w4SMQ(n *smqNode) {
	res := latenessResult{Bound: w4Bound, Settings: fmt.Sprintf("%d long-polling consumers (max=%d, wait=%d s), acks in batches by receipt (2 ackers); creates are batch creates of 1000 from 4 callers",
		w4SMQPollers, w4SMQPollMax, w4SMQPollWait)}
	n.reset()
	res.Spread = b.smqLateness(n, "w4", newLatenessPlan(w4Spread, w4SpreadOver, w4SpreadLead), "")
	n.reset()
	res.Burst = b.smqLateness(n, "w4", newLatenessPlan(w4Burst, time.Second, w4BurstLead), "w4 SMQ burst of 100,000")
	b.setLateness(sysSMQWAL, res)
}

// smqLateness runs one lateness plan on SMQ: long-polling consumers that
// ack in batches, creates through batch creates of 1000; it measures when
// every message was out of PENDING, reads the scheduler's own lateness
// histogram, and takes a CPU profile when profileName is set.
func (b *bench) smqLateness(n *smqNode, channel string, plan latenessPlan, profileName string) latenessRun {
	rec := newLatenessRecorder(plan)
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()

	waitConsumers := b.smqConsumers(ctx, n, channel, rec.record)

	les, histBefore, histErr := n.histogram("smq_scheduler_lateness_seconds")
	start := time.Now()
	busy, err := createPlan(b.ctx, n.client, channel, plan)
	b.must(err, "create lateness plan")
	created := time.Since(start)
	inDB := time.Duration(-1)
	if err := b.waitInDB(b.ctx, n, channel, int64(plan.n), time.Until(plan.t0), 5*time.Millisecond); err == nil {
		inDB = time.Since(start)
	}
	b.analyze(b.smqDB, "messages")

	// When every message is out of PENDING (pollable), from the first due
	// time.
	var ready time.Duration
	readyOK := false
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		time.Sleep(time.Until(plan.t0))
		// Not ctx: the last receipt may come before this sees no row left.
		probe := pendingProbe{db: b.smqDB, channel: channel, from: plan.t0.Add(-time.Second), end: plan.end().Add(time.Second)}
		err := waitFor(b.ctx, plan.over+w4Bound, 5*time.Millisecond, func() (bool, error) {
			return probe.none(b.ctx)
		})
		if err == nil {
			ready, readyOK = time.Since(plan.t0), true
		}
	}()
	var waitProfile func()
	if profileName != "" {
		time.Sleep(time.Until(plan.t0.Add(-500 * time.Millisecond)))
		waitProfile = n.profileDuring(profileName, int((plan.over+4*time.Second)/time.Second))
	}
	time.Sleep(time.Until(plan.t0))
	c0 := b.cpuNow()
	rec.wait(b.ctx, w4Bound)
	cpu := b.cpuSince(c0)
	cancel()
	waitConsumers()
	<-readyDone
	if waitProfile != nil {
		waitProfile()
	}
	_, histAfter, histErr2 := n.histogram("smq_scheduler_lateness_seconds")

	run := rec.result()
	run.CPU = cpu
	run.Ready, run.ReadyOK = ready, readyOK
	if histErr == nil && histErr2 == nil {
		run.ReadyP50 = histPct(les, histBefore, histAfter, 50)
		run.ReadyP99 = histPct(les, histBefore, histAfter, 99)
	}
	run.Settings = fmt.Sprintf("created in %s (%d × 429), all in the database after %s, the first due time %s after the start",
		created.Round(time.Millisecond), busy, fmtInDB(inDB), plan.t0.Sub(start).Round(time.Millisecond))
	if inDB < 0 {
		b.res.note(fmt.Sprintf("SMQ lateness run of %d messages on %s: not every message was in the database by the first due time", plan.n, channel))
	}
	return run
}

func fmtInDB(d time.Duration) string {
	if d < 0 {
		return "(not all by the first due time)"
	}
	return d.Round(time.Millisecond).String()
}

// createPlan creates a plan's messages with batch creates of 1000 from
// four callers.
func createPlan(ctx context.Context, c *smqClient, channel string, plan latenessPlan) (int, error) {
	var (
		next  atomic.Int64
		busy  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	total := plan.n
	for range 4 {
		wg.Go(func() {
			for {
				lo := int(next.Add(1000) - 1000)
				if lo >= total {
					return
				}
				ats := make([]time.Time, 0, 1000)
				for i := lo; i < min(lo+1000, total); i++ {
					ats = append(ats, plan.at(i))
				}
				nb, err := retryBusy(ctx, func() error { return c.createBatch(ctx, channel, ats) })
				busy.Add(int64(nb))
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return int(busy.Load()), first
}

func (b *bench) setLateness(system string, r latenessResult) {
	b.res.mu.Lock()
	b.res.lateness[system] = r
	b.res.mu.Unlock()
	for _, run := range []struct {
		name string
		r    latenessRun
	}{{"spread", r.Spread}, {"burst", r.Burst}} {
		l := run.r.Late
		b.t.Logf("w4 %s %s: p50 %s p99 %s max %s ms, not received %d; all pollable %s, all received %s ms after the first due time; cores %s",
			system, run.name, msOr(l.P50, l.P50ok, r.Bound), msOr(l.P99, l.P99ok, r.Bound), msOr(l.Max, l.Maxok, r.Bound), l.Missing,
			msOr(run.r.Ready, run.r.ReadyOK, r.Bound), msOr(run.r.AllReceived, run.r.AllReceivedOK, r.Bound), run.r.CPU)
	}
}

// smqConsumers long-polls channel from w4SMQPollers goroutines until ctx
// ends, hands each batch's receive time and scheduled times to record, and
// acks the batches from two more goroutines. The returned func waits for
// the pollers to stop (cancel ctx first) and for the last acks.
func (b *bench) smqConsumers(ctx context.Context, n *smqNode, channel string, record func(time.Time, ...time.Time)) (wait func()) {
	acks := make(chan []string, 1024)
	var ackers, pollers sync.WaitGroup
	for range 2 {
		ackers.Go(func() {
			for receipts := range acks {
				_ = n.client.ack(b.ctx, receipts)
			}
		})
	}
	for range w4SMQPollers {
		pollers.Go(func() {
			for ctx.Err() == nil {
				msgs, err := n.client.poll(ctx, channel, w4SMQPollMax, w4SMQPollWait)
				now := time.Now()
				if err != nil || len(msgs) == 0 {
					continue
				}
				ats := make([]time.Time, len(msgs))
				receipts := make([]string, len(msgs))
				for i, m := range msgs {
					ats[i], receipts[i] = m.ScheduledAt, m.Receipt
				}
				record(now, ats...)
				acks <- receipts
			}
		})
	}
	return func() {
		pollers.Wait()
		close(acks)
		ackers.Wait()
	}
}
