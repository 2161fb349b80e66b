package bench

import (
	"context"
	"fmt"
	"time"
)

// Workload 6: scale. The same lateness run (w6Spread messages due over
// w6Over, and a burst of w6Burst) and a poll-latency run, with first
// w6Small then w6Large future messages in the table: a filler copied
// straight into messages as PENDING, due in 30 days. The scheduler's cost
// must follow the number due, not the number stored.
const (
	w6Small  = 10_000
	w6Large  = 1_000_000
	w6Spread = 5_000
	w6Over   = 5 * time.Second
	w6Burst  = 20_000
	w6Polls  = 1000
	w6Ready  = 5000
)

func (b *bench) w6SMQ(n *smqNode) {
	for _, filler := range []int{w6Small, w6Large} {
		n.reset()
		far := time.Now().Add(30 * 24 * time.Hour)
		start := time.Now()
		b.must(b.copyMessages("w6-filler", "PENDING", func(i int) time.Time { return far.Add(time.Duration(i) * time.Millisecond) }, filler), "w6 filler")
		// Autovacuum would analyze a table this changed within a minute;
		// the run cannot wait that long, so it analyzes at once.
		b.vacuum(b.smqDB, "messages")
		fill := time.Since(start)

		// Poll latency: one client, max=1, on a channel of READY messages.
		due := time.Now().Add(-time.Minute)
		b.must(b.copyMessages("w6-ready", "READY", func(int) time.Time { return due }, w6Ready), "w6 ready")
		d, err := sequential(b.ctx, w6Polls, 50, func(ctx context.Context, _ int) error {
			msgs, err := n.client.poll(ctx, "w6-ready", 1, 0)
			if err == nil && len(msgs) != 1 {
				err = fmt.Errorf("poll returned %d messages, want 1", len(msgs))
			}
			return err
		})
		b.must(err, "w6 poll")

		spread := b.smqLateness(n, "w6", newLatenessPlan(w6Spread, w6Over, 3*time.Second), "")
		burst := b.smqLateness(n, "w6-burst", newLatenessPlan(w6Burst, time.Second, 4*time.Second), "")
		r := scaleResult{Filler: filler, Lateness: spread.Late, Poll: d.summary(), FillTime: fill}
		if burst.ReadyOK {
			r.Promote = burst.Ready
		}
		b.res.mu.Lock()
		b.res.scale[filler] = r
		b.res.mu.Unlock()
		b.t.Logf("w6 filler %d (copied in %s): lateness p50 %s p99 %s max %s ms; burst of %d pollable after %s ms; poll p50 %s ms p99 %s ms",
			filler, fill.Round(time.Millisecond), ms(r.Lateness.P50), ms(r.Lateness.P99), ms(r.Lateness.Max), w6Burst, ms(r.Promote), ms(r.Poll.P50), ms(r.Poll.P99))
	}
}
