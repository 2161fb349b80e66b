package bench

import (
	"context"
	"time"

	"github.com/riverqueue/river"
)

// Workload 1: create latency, one client, sequential. Every message is due
// in an hour, so nothing but the create is measured.
const (
	w1Creates = 3000
	w1Warm    = 300
)

func (b *bench) w1Peers() {
	b.resetRiver()
	rc := b.riverInserter()
	d, err := sequential(b.ctx, w1Creates, w1Warm, func(ctx context.Context, i int) error {
		_, err := rc.Insert(ctx, benchArgs{N: i}, &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
		return err
	})
	b.must(err, "w1 river")
	b.setCreateLatency(sysRiver, d)

	b.resetPGQ()
	d, err = sequential(b.ctx, w1Creates, w1Warm, func(ctx context.Context, i int) error {
		_, err := b.pgqDB.Exec(ctx, pgqInsert, "w1", time.Now().Add(time.Hour))
		return err
	})
	b.must(err, "w1 insert")
	b.setCreateLatency(sysInsert, d)
}

// w1SMQ creates with the raw client (see rawConn); in WAL mode it repeats
// the run with net/http's client, for comparison.
func (b *bench) w1SMQ(n *smqNode, system string) {
	n.reset()
	raw, err := newRawConn(n.client.base)
	b.must(err, "raw client")
	defer raw.close()
	type client struct {
		system string
		d      doer
	}
	clients := []client{{system, raw}}
	if system == sysSMQWAL {
		clients = append(clients, client{sysSMQWALStd, n.client})
	}
	for _, c := range clients {
		d, err := sequential(b.ctx, w1Creates, w1Warm, func(ctx context.Context, i int) error {
			return createVia(ctx, c.d, "w1", time.Now().Add(time.Hour))
		})
		b.must(err, "w1 "+c.system)
		b.setCreateLatency(c.system, d)
	}
}

func (b *bench) setCreateLatency(system string, d *dist) {
	s := d.summary()
	b.res.mu.Lock()
	b.res.createLatency[system] = s
	b.res.mu.Unlock()
	b.t.Logf("w1 %s: p50 %s ms, p99 %s ms", system, ms(s.P50), ms(s.P99))
}
