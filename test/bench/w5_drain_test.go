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

// Workload 5: drain. w5Messages messages already due are consumed and
// acknowledged; the clock runs from the consumers' start to the last ack
// (River: to the last job marked completed in the database), bounded by
// w5Bound.
const (
	w5Messages  = 100_000
	w5Consumers = 8
	w5PollMax   = 100
	w5Bound     = 30 * time.Second
)

func (b *bench) w5Peers() {
	for _, s := range []riverSettings{riverTuned, riverDefaults} {
		b.resetRiver()
		rc := b.riverInserter()
		for lo := 0; lo < w5Messages; lo += 1000 {
			params := make([]river.InsertManyParams, 1000)
			for i := range params {
				params[i] = river.InsertManyParams{Args: benchArgs{N: lo + i}}
			}
			_, err := rc.InsertManyFast(b.ctx, params)
			b.must(err, "w5 river insert")
		}
		b.vacuum(b.riverDB, "river_job")
		var ran atomic.Int64
		c0 := b.cpuNow()
		start := time.Now()
		stop := b.riverWorkers(s, func(*river.Job[benchArgs]) { ran.Add(1) })
		// Counted only once every job has run (a counter in this process),
		// as SMQ's probes wait for its buffer to empty: a count(*) every
		// 10 ms from the start would read the whole table each time, and
		// take PostgreSQL's CPU from River while it drains.
		var completed int64
		countCompleted := func() (err error) {
			completed, err = count(b.ctx, b.riverDB, `SELECT count(*) FROM river_job WHERE state = 'completed'`)
			return err
		}
		err := waitFor(b.ctx, w5Bound, 10*time.Millisecond, func() (bool, error) {
			if ran.Load() < w5Messages {
				return false, nil
			}
			err := countCompleted()
			return completed >= w5Messages, err
		})
		elapsed := time.Since(start)
		cpu := b.cpuSince(c0)
		if completed < w5Messages {
			// Timed out: report how many River finished by then.
			_ = countCompleted()
		}
		stop()
		if err != nil && b.ctx.Err() != nil {
			b.must(err, "w5 river")
		}
		b.setDrain(s.Name, drainResult{Consumers: riverMaxWorkers, Target: w5Messages, Done: int(completed), Elapsed: elapsed,
			Settings: s.String() + "; counted when River has marked the jobs completed", CPU: cpu})
	}

	b.resetPGQ()
	rows := make([][]any, w5Messages)
	due := time.Now().Add(-time.Minute)
	for i := range rows {
		rows[i] = []any{"w5", `{"n":1}`, due}
	}
	_, err := b.pgqDB.CopyFrom(b.ctx, pgx.Identifier{"jobs"}, []string{"channel", "payload", "scheduled_at"}, pgx.CopyFromRows(rows))
	b.must(err, "w5 copy")
	b.vacuum(b.pgqDB, "jobs")
	var taken atomic.Int64
	all := make(chan struct{})
	ctx, cancel := context.WithTimeout(b.ctx, w5Bound)
	c0 := b.cpuNow()
	start := time.Now()
	var last atomic.Int64
	wait := pgqConsume(ctx, b.pgqDB, func(_, at time.Time) {
		if taken.Add(1) == w5Messages {
			last.Store(int64(time.Since(start)))
			close(all)
		}
	})
	select {
	case <-all:
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	if l := last.Load(); l > 0 {
		elapsed = time.Duration(l)
	}
	cpu := b.cpuSince(c0)
	cancel()
	wait()
	b.setDrain(sysPGQ, drainResult{Consumers: pgqConsumers, Target: w5Messages, Done: int(taken.Load()), Elapsed: elapsed,
		Settings: fmt.Sprintf("%d consumers, DELETE … FOR UPDATE SKIP LOCKED of %d rows per statement", pgqConsumers, pgqBatch), CPU: cpu})
}

func (b *bench) w5SMQ(n *smqNode) {
	n.reset()
	const channel = "w5"
	due := time.Now().Add(-time.Minute)
	b.must(b.copyMessages(channel, "READY", func(int) time.Time { return due }, w5Messages), "w5 copy")
	b.vacuum(b.smqDB, "messages")

	var acked atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(b.ctx, w5Bound)
	defer cancel()
	var lastAck atomic.Int64
	errs := make(chan error, w5Consumers)
	waitProfile := n.profileDuring("w5 SMQ drain", 3)
	c0 := b.cpuNow()
	start := time.Now()
	for range w5Consumers {
		wg.Go(func() {
			for ctx.Err() == nil && acked.Load() < w5Messages {
				msgs, err := n.client.poll(ctx, channel, w5PollMax, 0)
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if len(msgs) == 0 {
					if acked.Load() >= w5Messages {
						return
					}
					continue
				}
				receipts := make([]string, len(msgs))
				for i, m := range msgs {
					receipts[i] = m.Receipt
				}
				if err := n.client.ack(ctx, receipts); err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if acked.Add(int64(len(msgs))) >= w5Messages {
					lastAck.CompareAndSwap(0, int64(time.Since(start)))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := b.cpuSince(c0)
	if l := lastAck.Load(); l > 0 {
		elapsed = time.Duration(l)
	}
	waitProfile()
	select {
	case err := <-errs:
		b.must(err, "w5 smq")
	default:
	}
	b.setDrain(sysSMQWAL, drainResult{Consumers: w5Consumers, Target: w5Messages, Done: int(acked.Load()), Elapsed: elapsed,
		Settings: fmt.Sprintf("%d consumers over HTTP, each: poll max=%d, then ack those by receipt; the messages were copied in as READY", w5Consumers, w5PollMax), CPU: cpu})
}

func (b *bench) setDrain(system string, r drainResult) {
	r.Rate = float64(r.Done) / r.Elapsed.Seconds()
	b.res.mu.Lock()
	b.res.drain[system] = r
	b.res.mu.Unlock()
	b.t.Logf("w5 %s: %d of %d in %s = %s msgs/s (cores %s)", system, r.Done, r.Target, r.Elapsed.Round(time.Millisecond), rate(r.Rate), r.CPU)
}
