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

// Workload 3: bulk create. w3Rows messages in batches, from w3Callers
// callers; the clock stops when the rows are in the database (for SMQ,
// whose flush is asynchronous, when a count of the table says so).
const (
	w3Rows    = 200_000
	w3Callers = 4
	w3Bound   = 90 * time.Second
)

// batches runs fn over w3Rows/batch batches from w3Callers callers and
// returns when every batch is acknowledged, with the count of 429s.
func batches(ctx context.Context, batch int, fn func(ctx context.Context, k int) error) (int, error) {
	var (
		next  atomic.Int64
		busy  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	total := int64(w3Rows / batch)
	for range w3Callers {
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if k >= total {
					return
				}
				nb, err := retryBusy(ctx, func() error { return fn(ctx, int(k)) })
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

func (b *bench) w3Peers() {
	const batch = 1000
	rc := b.riverInserter()
	params := func() []river.InsertManyParams {
		p := make([]river.InsertManyParams, batch)
		for i := range p {
			p[i] = river.InsertManyParams{Args: benchArgs{N: i}, InsertOpts: &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)}}
		}
		return p
	}
	for _, fast := range []bool{false, true} {
		b.resetRiver()
		name := "River InsertMany"
		if fast {
			name = "River InsertManyFast"
		}
		c0 := b.cpuNow()
		start := time.Now()
		busy, err := batches(b.ctx, batch, func(ctx context.Context, _ int) error {
			var err error
			if fast {
				_, err = rc.InsertManyFast(ctx, params())
			} else {
				_, err = rc.InsertMany(ctx, params())
			}
			return err
		})
		b.must(err, "w3 "+name)
		elapsed := time.Since(start)
		b.setBulk(name, bulkResult{Rows: w3Rows, Batch: batch, Elapsed: elapsed, Ack: elapsed, Errors: busy, CPU: b.cpuSince(c0)})
	}

	b.resetPGQ()
	c0 := b.cpuNow()
	start := time.Now()
	busy, err := batches(b.ctx, batch, func(ctx context.Context, _ int) error {
		at := time.Now().Add(time.Hour)
		rows := make([][]any, batch)
		for i := range rows {
			rows[i] = []any{"w3", `{"n":1}`, at}
		}
		_, err := b.pgqDB.CopyFrom(ctx, pgx.Identifier{"jobs"}, []string{"channel", "payload", "scheduled_at"}, pgx.CopyFromRows(rows))
		return err
	})
	b.must(err, "w3 copy")
	elapsed := time.Since(start)
	b.setBulk("pgx CopyFrom", bulkResult{Rows: w3Rows, Batch: batch, Elapsed: elapsed, Ack: elapsed, Errors: busy, CPU: b.cpuSince(c0)})
}

func (b *bench) w3SMQ(n *smqNode, system string) {
	for _, batch := range []int{100, 1000} {
		n.reset()
		name := fmt.Sprintf("%s batch %d", system, batch)
		var wait func()
		if batch == 1000 {
			wait = n.profileDuring("w3 "+name, 4)
		}
		ctx, cancel := context.WithTimeout(b.ctx, w3Bound)
		c0 := b.cpuNow()
		start := time.Now()
		busy, err := batches(ctx, batch, func(ctx context.Context, _ int) error {
			at := time.Now().Add(time.Hour)
			ats := make([]time.Time, batch)
			for i := range ats {
				ats[i] = at
			}
			return n.client.createBatch(ctx, "w3", ats)
		})
		ack := time.Since(start)
		if err == nil {
			err = b.waitInDB(ctx, n, "w3", w3Rows, w3Bound, 10*time.Millisecond)
		}
		elapsed := time.Since(start)
		cpu := b.cpuSince(c0)
		cancel()
		if wait != nil {
			wait()
		}
		b.must(err, "w3 "+name)
		b.setBulk(name, bulkResult{Rows: w3Rows, Batch: batch, Elapsed: elapsed, Ack: ack, Errors: busy, CPU: cpu})
	}
}

func (b *bench) setBulk(name string, r bulkResult) {
	r.Rate = float64(r.Rows) / r.Elapsed.Seconds()
	b.res.mu.Lock()
	b.res.bulk[name] = r
	b.res.mu.Unlock()
	b.t.Logf("w3 %s: %d rows in %s = %s rows/s (acked after %s, 429s %d; cores %s)", name, r.Rows, r.Elapsed.Round(time.Millisecond), rate(r.Rate), r.Ack.Round(time.Millisecond), r.Errors, r.CPU)
}
