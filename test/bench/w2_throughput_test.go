package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/riverqueue/river"
)

// Workload 2: durable create throughput at several concurrencies, each
// caller creating back to back for w2Duration. SMQ: single creates over
// HTTP (201 means in the WAL, or in memory in memory mode); River: Insert;
// plain: one INSERT per message on the hand-written queue's table.
var w2Concurrency = []int{1, 16, 64}

const (
	w2Duration = 5 * time.Second
	w2Warm     = 20
)

func (b *bench) w2Peers() {
	rc := b.riverInserter()
	for _, c := range w2Concurrency {
		b.resetRiver()
		c0 := b.cpuNow()
		r, err := closedLoop(b.ctx, c, w2Duration, w2Warm, func(ctx context.Context, _, i int) error {
			_, err := rc.Insert(ctx, benchArgs{N: i}, &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
			return err
		}, nil)
		b.must(err, "w2 river")
		r.CPU = b.cpuSince(c0)
		b.setThroughput(sysRiver, c, r)
	}
	for _, c := range w2Concurrency {
		b.resetPGQ()
		c0 := b.cpuNow()
		r, err := closedLoop(b.ctx, c, w2Duration, w2Warm, func(ctx context.Context, _, _ int) error {
			_, err := b.pgqDB.Exec(ctx, pgqInsert, "w2", time.Now().Add(time.Hour))
			return err
		}, nil)
		b.must(err, "w2 insert")
		r.CPU = b.cpuSince(c0)
		b.setThroughput(sysInsert, c, r)
	}
}

// w2SMQ drives single creates with the raw client (see rawConn); in WAL
// mode it repeats the 64-caller run with net/http's client, for comparison.
func (b *bench) w2SMQ(n *smqNode, system string) {
	for _, c := range w2Concurrency {
		create, done := b.rawCreator(n, c)
		b.w2SMQRun(n, system, c, create)
		done()
	}
	if system == sysSMQWAL {
		b.w2SMQRun(n, sysSMQWALStd, 64, func(ctx context.Context, _, _ int) error {
			return n.client.create(ctx, "w2", time.Now().Add(time.Hour))
		})
	}
}

func (b *bench) w2SMQRun(n *smqNode, system string, c int, create func(ctx context.Context, worker, i int) error) {
	n.reset()
	// Profiled: the runs behind the targets of issues 3 and 7, and the
	// memory mode's at 64 callers to compare with.
	var wait func()
	if system == sysSMQWAL && (c == 16 || c == 64) || system == sysSMQMemory && c == 64 {
		wait = n.profileDuring(w2Profile(system, c), int(w2Duration/time.Second))
	}
	// syncs returns the WAL's group writes so far and the seconds they took.
	syncs := func() (float64, float64) { return 0, 0 }
	if system != sysSMQMemory {
		syncs = func() (float64, float64) {
			v, err := n.metrics("smq_wal_syncs_total", "smq_wal_sync_seconds_total")
			b.must(err, "w2 WAL syncs")
			return v[0], v[1]
		}
	}
	// The syncs are counted from the end of the warm-up, which runs one
	// caller at a time.
	var s0, t0 float64
	c0 := b.cpuNow()
	r, err := closedLoop(b.ctx, c, w2Duration, w2Warm, create, func() { s0, t0 = syncs() })
	r.CPU = b.cpuSince(c0)
	if s1, t1 := syncs(); err == nil && s1 > s0 {
		r.PerSync = float64(r.Ops) / (s1 - s0)
		r.SyncMean = time.Duration((t1 - t0) / (s1 - s0) * float64(time.Second))
	}
	if wait != nil {
		wait()
	}
	b.must(err, "w2 "+system+" c="+strconv.Itoa(c))
	b.setThroughput(system, c, r)
}

// rawCreator returns a create for closedLoop's workers, each with its own
// raw connection, and a func that closes them.
// w2Profile names the CPU profile of a run of w2.
func w2Profile(system string, c int) string {
	return fmt.Sprintf("w2 %s single creates c=%d", system, c)
}

func (b *bench) rawCreator(n *smqNode, workers int) (create func(ctx context.Context, worker, i int) error, done func()) {
	conns := make([]*rawConn, workers)
	bodies := make([][]byte, workers)
	for w := range conns {
		c, err := newRawConn(n.client.base)
		b.must(err, "raw client")
		conns[w] = c
	}
	done = func() {
		for _, c := range conns {
			c.close()
		}
	}
	return func(ctx context.Context, w, _ int) error {
		bodies[w] = appendMessage(bodies[w][:0], "w2", time.Now().Add(time.Hour))
		code, body, err := conns[w].post(ctx, "/v1/message", bodies[w])
		if err != nil {
			return err
		}
		return check(code, body, http.StatusCreated)
	}, done
}

func (b *bench) setThroughput(system string, c int, r tput) {
	b.res.mu.Lock()
	if b.res.throughput[system] == nil {
		b.res.throughput[system] = map[int]tput{}
	}
	b.res.throughput[system][c] = r
	b.res.mu.Unlock()
	b.t.Logf("w2 %s c=%d: %s/s (p50 %s ms, p99 %s ms, 429s %d; cores %s)", system, c, rate(r.Rate), ms(r.Latency.P50), ms(r.Latency.P99), r.Errors, r.CPU)
}
