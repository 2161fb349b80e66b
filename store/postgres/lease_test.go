package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

// A receipt whose lease has expired is refused by ack, nack and extend
// even before the janitor sweeps it, and the row is left for the janitor.
func TestExpiredLeaseRefused(t *testing.T) {
	b := setup(t)
	m := newMessage("jobs", time.Now())
	b.insert(t, m)
	got := b.poll(t, "jobs", 1, 50*time.Millisecond)
	require.Len(t, got, 1)
	time.Sleep(100 * time.Millisecond)

	_, err := b.store.MessageExtend(b.ctx, &store.MessageExtendParams{Receipts: receipts(got), Visibility: time.Hour})
	require.ErrorIs(t, err, store.ErrStaleLease)
	_, err = b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: receipts(got)})
	require.ErrorIs(t, err, store.ErrStaleLease)
	_, err = b.store.MessageNack(b.ctx, &store.MessageNackParams{Receipts: receipts(got)})
	require.ErrorIs(t, err, store.ErrStaleLease)

	still, err := b.store.MessageGet(b.ctx, m.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusAcquired, still.Status)
	require.Equal(t, got[0].LeaseToken, still.LeaseToken)
	r, err := b.store.MessageRecover(b.ctx, &store.MessageRecoverParams{Region: "eu", Limit: 10})
	require.NoError(t, err)
	require.Equal(t, 1, r.Retried)
}

// Nacks by receipt run in a transaction; their wake-ups are sent after it
// commits. Sent from inside it, each needed a second connection of the
// pool while holding one: with every connection held by such a nack, all
// of them waited until their deadline and failed.
func TestConcurrentNacksOnASmallPool(t *testing.T) {
	url := pgtest.URL(t)
	const conns, nacks = 4, 64
	s, err := postgres.Open(context.Background(), url, postgres.Options{Region: "eu", MaxConns: conns})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	b := &bundle{ctx: context.Background(), store: s, url: url}
	var msgs []*store.Message
	for range nacks {
		msgs = append(msgs, newMessage("jobs", time.Now()))
	}
	b.insert(t, msgs...)
	leased := b.poll(t, "jobs", nacks, time.Minute)
	require.Len(t, leased, nacks)

	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range leased {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
			defer cancel()
			if _, err := s.MessageNack(ctx, &store.MessageNackParams{Receipts: receipts(leased[i : i+1])}); err != nil {
				t.Logf("nack %d: %v", i, err)
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	require.Zero(t, failed.Load())
}

// The backoff cannot overflow, however many attempts a message has had: a
// message on a dead-letter channel is never dead-lettered again, so its
// attempts grow with every lease. An overflow failed the janitor's whole
// recovery of the region, every other expired lease with it.
func TestBackoffOfManyAttempts(t *testing.T) {
	b := setup(t)
	poison, other := newMessage("jobs.DLQ", time.Now()), newMessage("jobs", time.Now())
	b.insert(t, poison, other)
	require.Len(t, b.poll(t, "jobs.DLQ", 1, time.Millisecond), 1)
	require.Len(t, b.poll(t, "jobs", 1, time.Millisecond), 1)
	conn, err := pgx.Connect(b.ctx, b.url)
	require.NoError(t, err)
	defer conn.Close(b.ctx)
	_, err = conn.Exec(b.ctx, `UPDATE messages SET attempts = 5000 WHERE id = $1`, poison.ID)
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)

	before := time.Now()
	backoff := store.Backoff{Base: time.Second, Factor: 10, Cap: time.Minute}
	r, err := b.store.MessageRecover(b.ctx, &store.MessageRecoverParams{Region: "eu", Limit: 10, Backoff: backoff})
	require.NoError(t, err)
	require.Equal(t, 2, r.Retried)
	got, err := b.store.MessageGet(b.ctx, poison.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusPending, got.Status)
	require.Equal(t, "jobs.DLQ", got.Channel)
	// The cap, with the jitter over its upper half.
	require.WithinRange(t, got.ScheduledAt, before.Add(29*time.Second), before.Add(61*time.Second))
}

// FlushMark waits for a flush of the node still in flight, and returns the
// mark it left: how a flusher whose insert failed on its way back learns
// that it committed.
func TestFlushMarkWaitsForAFlushInFlight(t *testing.T) {
	b := setup(t)
	for _, first := range []bool{true, false} {
		node := "n-" + map[bool]string{true: "first", false: "next"}[first]
		if !first {
			_, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Node: node, Seq: 5})
			require.NoError(t, err)
		}
		conn, err := pgx.Connect(b.ctx, b.url)
		require.NoError(t, err)
		tx, err := conn.Begin(b.ctx)
		require.NoError(t, err)
		_, err = tx.Exec(b.ctx, `INSERT INTO flush_marks (node_id, seq, updated_at) VALUES ($1, 10, now())
			ON CONFLICT (node_id) DO UPDATE SET seq = 10`, node)
		require.NoError(t, err)

		got := make(chan uint64, 1)
		go func() {
			mark, err := b.store.FlushMark(b.ctx, node)
			if err != nil {
				t.Error(err)
			}
			got <- mark
		}()
		select {
		case mark := <-got:
			t.Fatalf("%s: read %d while the flush was in flight", node, mark)
		case <-time.After(300 * time.Millisecond):
		}
		require.NoError(t, tx.Commit(b.ctx))
		select {
		case mark := <-got:
			require.Equal(t, uint64(10), mark, node)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no mark after the flush committed", node)
		}
		require.NoError(t, conn.Close(b.ctx))
	}
}
