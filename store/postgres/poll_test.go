package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
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

// TestLeaseCommitsWithoutWaitingForTheDisk checks, with a trigger that notes
// the setting in force in each transaction that changes a message, that a
// lease (of a READY message, and of a due PENDING one) commits with
// synchronous_commit off, and that the setting does not outlive it: an ack
// on the same connection, the pool's only one, still waits for the disk.
// The test server runs with synchronous_commit off; the connection here
// asks for it on, as a production server has it.
func TestLeaseCommitsWithoutWaitingForTheDisk(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	url += map[bool]string{true: "&", false: "?"}[strings.Contains(url, "?")] + "synchronous_commit=on"
	s, err := postgres.Open(ctx, url, postgres.Options{Region: "eu", MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	var mode string
	require.NoError(t, s.Pool().QueryRow(ctx, `SHOW synchronous_commit`).Scan(&mode))
	require.Equal(t, "on", mode)
	_, err = s.Pool().Exec(ctx, `CREATE TABLE commit_modes (seq serial, op text, mode text);
		CREATE FUNCTION note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'DELETE' THEN
				INSERT INTO commit_modes (op, mode) VALUES ('delete ' || OLD.status, current_setting('synchronous_commit'));
				RETURN OLD;
			END IF;
			INSERT INTO commit_modes (op, mode) VALUES ('update ' || OLD.status || '->' || NEW.status, current_setting('synchronous_commit'));
			RETURN NEW;
		END $$;
		CREATE TRIGGER note_commit_mode BEFORE UPDATE OR DELETE ON messages
			FOR EACH ROW EXECUTE FUNCTION note_commit_mode()`)
	require.NoError(t, err)

	ready, pending := newMessage("jobs", time.Now().Add(-time.Minute)), newMessage("jobs", time.Now().Add(-time.Minute))
	_, err = s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: []*store.Message{ready, pending}})
	require.NoError(t, err)
	_, err = s.Pool().Exec(ctx, `UPDATE messages SET status = CASE WHEN id = $1 THEN 'READY' ELSE 'PENDING' END`, ready.ID)
	require.NoError(t, err)
	_, err = s.Pool().Exec(ctx, `TRUNCATE commit_modes`)
	require.NoError(t, err)

	var receipts []store.Receipt
	for range 2 {
		got, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: "jobs", Max: 1, Visibility: time.Hour, Region: "eu"})
		require.NoError(t, err)
		require.Len(t, got, 1)
		receipts = append(receipts, store.Receipt{ID: got[0].ID, Token: got[0].LeaseToken})
	}
	counts, err := s.MessageAck(ctx, &store.MessageAckParams{Receipts: receipts})
	require.NoError(t, err)
	require.Equal(t, 2, counts.Total())

	rows, err := s.Pool().Query(ctx, `SELECT op || ': ' || mode FROM commit_modes ORDER BY seq`)
	require.NoError(t, err)
	noted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{
		"update READY->ACQUIRED: off", "update PENDING->ACQUIRED: off",
		"delete ACQUIRED: on", "delete ACQUIRED: on",
	}, noted)

	require.NoError(t, s.Pool().QueryRow(ctx, `SHOW synchronous_commit`).Scan(&mode))
	require.Equal(t, "on", mode)
}

// TestPollKeepsWhatItLeased makes the second query of a poll fail (the one
// that leases due PENDING messages, after the READY ones were leased): the
// poll must still deliver the READY message it leased, not fail and leave
// that lease to expire undelivered.
func TestPollKeepsWhatItLeased(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, postgres.Options{Region: "eu"})
	ready, pending := newMessage("jobs", time.Now().Add(-time.Minute)), newMessage("jobs", time.Now().Add(-time.Minute))
	_, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: []*store.Message{ready, pending}})
	require.NoError(t, err)
	_, err = s.Pool().Exec(ctx, `UPDATE messages SET status = CASE WHEN id = $1 THEN 'READY' ELSE 'PENDING' END`, ready.ID)
	require.NoError(t, err)
	_, err = s.Pool().Exec(ctx, `CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'no claims today'; END $$;
		CREATE TRIGGER refuse_claim BEFORE UPDATE ON messages
			FOR EACH ROW WHEN (OLD.status = 'PENDING' AND NEW.status = 'ACQUIRED') EXECUTE FUNCTION refuse_claim()`)
	require.NoError(t, err)

	got, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: "jobs", Max: 10, Visibility: time.Hour, Region: "eu"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, ready.ID, got[0].ID)

	// With nothing leased, the failure is the poll's.
	_, err = s.MessagePoll(ctx, &store.MessagePollParams{Channel: "jobs", Max: 10, Visibility: time.Hour, Region: "eu"})
	require.ErrorContains(t, err, "no claims today")
}
