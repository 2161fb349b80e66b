package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Loopback latency, one client: create (WAL mode), poll (max=1 on a
// channel of READY messages) and the health endpoints.
const (
	loopbackN    = 3000
	loopbackWarm = 300
)

func (b *bench) loopback(n *smqNode) {
	n.reset()
	ops := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"create (WAL)", func(ctx context.Context) error { return n.client.create(ctx, "loop", time.Now().Add(time.Hour)) }},
		{"poll (max=1)", func(ctx context.Context) error {
			msgs, err := n.client.poll(ctx, "loop-ready", 1, 0)
			if err == nil && len(msgs) != 1 {
				err = fmt.Errorf("poll returned %d messages, want 1", len(msgs))
			}
			return err
		}},
		{"GET /livez", func(ctx context.Context) error { return n.client.expect(ctx, "/livez") }},
		{"GET /v1/health", func(ctx context.Context) error { return n.client.expect(ctx, "/v1/health") }},
	}
	due := time.Now().Add(-time.Minute)
	b.must(b.copyMessages("loop-ready", "READY", func(int) time.Time { return due }, loopbackN+loopbackWarm+100), "loopback ready")
	for _, o := range ops {
		d, err := sequential(b.ctx, loopbackN, loopbackWarm, func(ctx context.Context, _ int) error { return o.op(ctx) })
		b.must(err, "loopback "+o.name)
		s := d.summary()
		b.res.mu.Lock()
		b.res.loopback[o.name] = s
		b.res.mu.Unlock()
		b.t.Logf("loopback %s: p50 %s ms, p99 %s ms", o.name, ms(s.P50), ms(s.P99))
	}
}

func (c *smqClient) expect(ctx context.Context, path string) error {
	code, body, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return check(code, body, http.StatusOK)
}

// Idle: with no traffic, how many transactions SMQ runs against its
// database, from pg_stat_database. Backends report their counts with a
// lag of about a second; the lag is the same at both reads, so the count
// between them covers the time between them.
const (
	idleSettle = 5 * time.Second
	idleWindow = 10 * time.Second
)

func (b *bench) idle(n *smqNode) {
	n.reset()
	time.Sleep(idleSettle)
	x0, err := b.xacts(dbSMQ)
	b.must(err, "idle xacts")
	t0 := time.Now()
	time.Sleep(idleWindow)
	x1, err := b.xacts(dbSMQ)
	b.must(err, "idle xacts")
	window := time.Since(t0)
	r := &idleResult{Window: window, Xacts: x1 - x0, PerSec: float64(x1-x0) / window.Seconds(),
		Details: fmt.Sprintf("xact_commit + xact_rollback of database %q in pg_stat_database, read %s apart after %s without traffic",
			dbSMQ, window.Round(time.Millisecond), idleSettle)}
	b.res.mu.Lock()
	b.res.idle = r
	b.res.mu.Unlock()
	b.t.Logf("idle: %d transactions in %s = %.1f/s", r.Xacts, window.Round(time.Millisecond), r.PerSec)
}
