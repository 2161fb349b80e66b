package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
)

// TestConcurrentPollsShareQueries runs many concurrent pollers of one
// channel and checks that every message is delivered exactly once and that
// no poll gets more than it asked for.
func TestConcurrentPollsShareQueries(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, postgres.Options{Region: "eu"})
	const total = 3000
	msgs := make([]*store.Message, total)
	for i := range msgs {
		msgs[i] = newMessage("jobs", time.Now().Add(-time.Minute))
	}
	_, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: msgs})
	require.NoError(t, err)

	var (
		mu   sync.Mutex
		seen = map[uuid.UUID]int{}
		wg   sync.WaitGroup
	)
	for i := range 12 {
		wg.Go(func() {
			max := 1 + i*17%150
			for {
				got, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: "jobs", Max: max, Visibility: time.Hour, Region: "eu"})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) > max {
					t.Errorf("asked for %d, got %d", max, len(got))
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for id, n := range seen {
		require.Equal(t, 1, n, "message %s delivered %d times", id, n)
	}
	require.Len(t, seen, total)
}

// TestWaitingPollGivesUp holds the table locked so that the polls' queries
// block, queues more polls of the channel behind them, cancels one (it must
// return at once), then releases the lock: the others are answered, each
// with no more than it asked for, and share every message.
func TestWaitingPollGivesUp(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, postgres.Options{Region: "eu"})
	msgs := make([]*store.Message, 50)
	for i := range msgs {
		msgs[i] = newMessage("jobs", time.Now().Add(-time.Minute))
	}
	_, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: msgs})
	require.NoError(t, err)

	tx, err := s.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, `LOCK TABLE messages IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	type answer struct {
		n   int
		err error
	}
	poll := func(pctx context.Context, max int) chan answer {
		ch := make(chan answer, 1)
		go func() {
			got, err := s.MessagePoll(pctx, &store.MessagePollParams{Channel: "jobs", Max: max, Visibility: time.Hour, Region: "eu"})
			ch <- answer{len(got), err}
		}()
		return ch
	}
	// Two queries of a channel run at once: both block on the lock.
	leader := poll(ctx, 10)
	stay1 := poll(ctx, 20)
	time.Sleep(100 * time.Millisecond)
	gone, cancel := context.WithCancel(ctx)
	leave := poll(gone, 15)
	time.Sleep(50 * time.Millisecond)
	stay2 := poll(ctx, 30)
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case a := <-leave:
		require.ErrorIs(t, a.err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting poll that gave up did not return")
	}
	require.NoError(t, tx.Commit(ctx))

	got := 0
	for _, c := range []struct {
		ch  chan answer
		max int
	}{{leader, 10}, {stay1, 20}, {stay2, 30}} {
		a := <-c.ch
		require.NoError(t, a.err)
		require.LessOrEqual(t, a.n, c.max)
		got += a.n
	}
	require.Equal(t, 50, got, "the polls that stayed share the 50 messages")
}
