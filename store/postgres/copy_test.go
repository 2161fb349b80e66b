package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
	"github.com/smq/smq/store/buffer"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

// openWith opens a store on a fresh database with opts.
func openWith(tb testing.TB, opts postgres.Options) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), pgtest.URL(tb), opts)
	require.NoError(tb, err)
	tb.Cleanup(s.Close)
	return s
}

// TestInsertManyByCopy checks the COPY path of a flush: due messages are
// READY and wake their channel, future ones PENDING and wake the
// scheduler, the channels are listed and the watermark is raised, all in
// one transaction; a batch holding an id already stored falls back to
// INSERT and skips it instead of failing.
func TestInsertManyByCopy(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, postgres.Options{Region: "eu", CopyMin: 1})
	ready, stopReady := s.Subscribe(store.ReadyTopic("now"))
	defer stopReady()
	due, stopDue := s.Subscribe(store.DueTopic("eu"))
	defer stopDue()

	now, later := newMessage("now", time.Now().Add(-time.Second)), newMessage("later", time.Now().Add(time.Hour))
	later.Region = "us"
	res, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: []*store.Message{now, later}, Node: "n1", Seq: 42, Seqs: []uint64{41, 42}})
	require.NoError(t, err)
	require.Equal(t, 2, res.Inserted)

	got, err := s.MessageGet(ctx, now.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, got.Status)
	require.Equal(t, "eu", got.Region)
	require.Equal(t, now.Payload, got.Payload)
	require.Equal(t, 3, got.MaxAttempts)
	require.WithinDuration(t, now.ScheduledAt, got.ScheduledAt, time.Microsecond)
	got, err = s.MessageGet(ctx, later.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusPending, got.Status)
	require.Equal(t, "us", got.Region)

	names, err := s.ChannelList(ctx, 10, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"later", "now"}, names)
	mark, err := s.FlushMark(ctx, "n1")
	require.NoError(t, err)
	require.Equal(t, uint64(42), mark)
	for name, ch := range map[string]<-chan struct{}{"ready": ready, "due": due} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s wake-up after the COPY", name)
		}
	}

	// The same ids again above the mark (not a retried flush, which the
	// mark filters: ids stored some other way) with a new one: the COPY
	// fails on the ids, the INSERT fallback writes only the new row and
	// still raises the mark.
	fresh := newMessage("later", time.Now().Add(time.Hour))
	res, err = s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: []*store.Message{now, later, fresh}, Node: "n1", Seq: 45, Seqs: []uint64{43, 44, 45}})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	mark, err = s.FlushMark(ctx, "n1")
	require.NoError(t, err)
	require.Equal(t, uint64(45), mark)
}

// TestCopyWritesWhatInsertWrites flushes the same messages by COPY (whose
// binary rows copyMany writes by hand) and by INSERT, into two databases,
// and checks that the rows read back the same, column by column: times
// before 2000, with nanoseconds and in other zones, payloads with any
// bytes, the smallest max_attempts, the node's region as the default.
func TestCopyWritesWhatInsertWrites(t *testing.T) {
	ctx := context.Background()
	byCopy := openWith(t, postgres.Options{Region: "eu", CopyMin: 1})
	byInsert := openWith(t, postgres.Options{Region: "eu", CopyMin: -1})
	zone := time.FixedZone("z", -9*3600-30*60)
	times := []time.Time{
		time.Now().Add(-time.Hour), time.Now().Add(time.Hour),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1969, 7, 20, 20, 17, 40, 123456789, zone),
		time.Date(2000, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, zone),
	}
	payloads := [][]byte{[]byte(`{"n":1}`), []byte("\x00\xff\x00"), []byte(`"é \u2028"`), make([]byte, 70000), []byte(`[]`)}
	var msgs []*store.Message
	for i, at := range times {
		m := newMessage(fmt.Sprintf("ch.%d_x-%s", i, strings.Repeat("y", i*20)), at)
		m.Payload = payloads[i%len(payloads)]
		m.MaxAttempts = []int{0, 1, 1000, 7}[i%4]
		m.CreatedAt = times[(i+1)%len(times)]
		if i%2 == 1 {
			m.Region = "us"
		}
		msgs = append(msgs, m)
	}
	for _, s := range []*postgres.Store{byCopy, byInsert} {
		res, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: msgs, Node: "n1", Seq: 7, Seqs: seqsUpTo(7, len(msgs))})
		require.NoError(t, err)
		require.Equal(t, len(msgs), res.Inserted)
	}
	read := func(s *postgres.Store) []string {
		rows, err := s.Pool().Query(ctx, `SELECT concat_ws(' | ', id, channel, encode(sha256(payload), 'hex'), length(payload), status,
				scheduled_at AT TIME ZONE 'UTC', attempts, max_attempts, created_at AT TIME ZONE 'UTC', region, lease_token,
				leased_until, acquired_at, dedup_key, original_channel, last_error)
			FROM messages ORDER BY id`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	copied := read(byCopy)
	require.Len(t, copied, len(msgs))
	require.Equal(t, read(byInsert), copied)
	// And what the store reads back is what was written, to the microsecond.
	for _, m := range msgs {
		got, err := byCopy.MessageGet(ctx, m.ID)
		require.NoError(t, err)
		require.True(t, got.ScheduledAt.Equal(m.ScheduledAt.Truncate(time.Microsecond)), "%v vs %v", got.ScheduledAt, m.ScheduledAt)
		require.Equal(t, m.Payload, got.Payload)
	}
}

// BenchmarkInsertMany compares a flush of 1000 messages by INSERT …
// unnest … ON CONFLICT and by COPY, on whatever server SMQ_TEST_DATABASE_URL
// names (durable settings give the figures that matter).
func BenchmarkInsertMany(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		for _, mode := range []struct {
			name    string
			copyMin int
		}{{"insert", -1}, {"copy", 1}} {
			b.Run(fmt.Sprintf("%s-%d", mode.name, batch), func(b *testing.B) {
				s := openWith(b, postgres.Options{Region: "eu", CopyMin: mode.copyMin})
				ctx := context.Background()
				seq := uint64(0)
				b.ResetTimer()
				for b.Loop() {
					b.StopTimer()
					msgs := make([]*store.Message, batch)
					for i := range msgs {
						msgs[i] = newMessage("bench", time.Now().Add(time.Hour))
						msgs[i].Payload = []byte(`{"n":1,"text":"hello world"}`)
					}
					seq += uint64(batch)
					b.StartTimer()
					if _, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: msgs, Node: "bench", Seq: seq, Seqs: seqsUpTo(seq, batch)}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkPromote measures promotion passes of 10,000 due messages, the
// scheduler's side of a burst.
func BenchmarkPromote(b *testing.B) {
	s := openWith(b, postgres.Options{Region: "eu"})
	ctx := context.Background()
	const n = 10_000
	for b.Loop() {
		b.StopTimer()
		msgs := make([]*store.Message, n)
		due := time.Now().Add(50 * time.Millisecond)
		for i := range msgs {
			msgs[i] = newMessage(fmt.Sprintf("c%d", i%4), due)
		}
		if _, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: msgs}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE messages`); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Until(due))
		b.StartTimer()
		p, err := s.MessagePromote(ctx, &store.MessagePromoteParams{Region: "eu", Limit: n})
		if err != nil || p.Count != n {
			b.Fatal(p, err)
		}
		b.StopTimer()
		if _, err := s.Pool().Exec(ctx, `TRUNCATE messages`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
}

// TestPromoteRacesReschedule checks that a promotion pass that meets a row
// being rescheduled into the future skips it without waiting, and that the
// row stays PENDING at its new time.
func TestPromoteRacesReschedule(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, postgres.Options{Region: "eu"})
	a, b := newMessage("x", time.Now().Add(-time.Second)), newMessage("x", time.Now().Add(-time.Second))
	_, err := s.Pool().Exec(ctx, `INSERT INTO messages (id, channel, payload, status, scheduled_at, region)
		VALUES ($1, 'x', '{}', 'PENDING', now() - interval '1 second', 'eu'),
		       ($2, 'x', '{}', 'PENDING', now() - interval '1 second', 'eu')`, [16]byte(a.ID), [16]byte(b.ID))
	require.NoError(t, err)

	tx, err := s.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, `UPDATE messages SET scheduled_at = now() + interval '1 hour' WHERE id = $1`, [16]byte(a.ID))
	require.NoError(t, err)

	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := s.MessagePromote(pctx, &store.MessagePromoteParams{Region: "eu", Limit: 10})
	require.NoError(t, err, "the promotion must not wait for the row being rescheduled")
	require.Equal(t, 1, p.Count)
	require.NoError(t, tx.Commit(ctx))

	p, err = s.MessagePromote(ctx, &store.MessagePromoteParams{Region: "eu", Limit: 10})
	require.NoError(t, err)
	require.Equal(t, 0, p.Count)
	got, err := s.MessageGet(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusPending, got.Status, "the rescheduled message stays PENDING")
	require.True(t, got.ScheduledAt.After(time.Now().Add(50*time.Minute)))
	got, err = s.MessageGet(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, got.Status)
}

// TestPollClaimsDuePending checks that a poll leases due PENDING messages
// of its channel and region that the scheduler has not promoted yet, after
// the READY ones, and tells OnClaimDue how late they were; future
// messages, other channels' and other regions' stay PENDING.
func TestPollClaimsDuePending(t *testing.T) {
	ctx := context.Background()
	var claimed []store.Promoted
	s := openWith(t, postgres.Options{Region: "eu", CopyMin: -1, OnClaimDue: func(p store.Promoted) { claimed = append(claimed, p) }})
	insert := func(channel, region, status string, at time.Duration) *store.Message {
		m := newMessage(channel, time.Now().Add(at))
		_, err := s.Pool().Exec(ctx, `INSERT INTO messages (id, channel, payload, status, scheduled_at, region)
			VALUES ($1, $2, '{}', $3, now() + $4::interval, $5)`, [16]byte(m.ID), channel, status, at, region)
		require.NoError(t, err)
		return m
	}
	ready := insert("jobs", "eu", "READY", -time.Minute)
	due := insert("jobs", "eu", "PENDING", -time.Second)
	future := insert("jobs", "eu", "PENDING", time.Hour)
	other := insert("other", "eu", "PENDING", -time.Second)
	away := insert("jobs", "us", "PENDING", -time.Second)

	got, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: "jobs", Max: 10, Visibility: time.Minute, Region: "eu"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, ready.ID, got[0].ID, "READY first, in due order")
	require.Equal(t, due.ID, got[1].ID)
	require.Equal(t, store.StatusAcquired, got[1].Status)
	require.Equal(t, 1, got[1].Attempts)
	require.Len(t, claimed, 1)
	require.Equal(t, 1, claimed[0].Count)
	require.InDelta(t, time.Second, claimed[0].Lateness[0], float64(500*time.Millisecond))
	for _, m := range []*store.Message{future, other, away} {
		got, err := s.MessageGet(ctx, m.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusPending, got.Status, m.Channel)
	}
}

// seqsUpTo returns the n buffer sequences that end at last, as a batch of
// a flush numbers its messages.
func seqsUpTo(last uint64, n int) []uint64 {
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = last - uint64(n-1-i)
	}
	return seqs
}

// TestFlushSkipsWhatTheMarkHas retries flushes as a flusher does when it
// cannot tell whether its last one committed, by COPY and by INSERT. A
// message the database had, then delivered and deleted, must not come back:
// inserting it again would deliver it twice. And a flush waits for a
// transaction that holds its node's mark, then skips what that one wrote.
func TestFlushSkipsWhatTheMarkHas(t *testing.T) {
	for _, mode := range []struct {
		name    string
		copyMin int
	}{{"copy", 1}, {"insert", -1}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := context.Background()
			s := openWith(t, postgres.Options{Region: "eu", CopyMin: mode.copyMin})
			flush := func(seqs []uint64, msgs ...*store.Message) int {
				t.Helper()
				res, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: msgs, Node: "n1", Seq: seqs[len(seqs)-1], Seqs: seqs})
				require.NoError(t, err)
				return res.Inserted
			}
			a, b, c, d := newMessage("c", time.Now()), newMessage("c", time.Now()), newMessage("c", time.Now()), newMessage("c", time.Now())
			require.Equal(t, 3, flush([]uint64{11, 12, 13}, a, b, c))
			require.NoError(t, s.MessageDelete(ctx, b.ID)) // delivered and acked, say

			// The same batch again, grown by one record.
			require.Equal(t, 1, flush([]uint64{11, 12, 13, 14}, a, b, c, d))
			_, err := s.MessageGet(ctx, b.ID)
			require.ErrorIs(t, err, store.ErrNotFound, "a flushed message, since deleted, was inserted again")
			for _, m := range []*store.Message{a, c, d} {
				_, err := s.MessageGet(ctx, m.ID)
				require.NoError(t, err)
			}
			// All of it below the mark: nothing to write, and no error.
			require.Equal(t, 0, flush([]uint64{11, 12, 13, 14}, a, b, c, d))
			mark, err := s.FlushMark(ctx, "n1")
			require.NoError(t, err)
			require.EqualValues(t, 14, mark)

			// A transaction of another attempt holds the mark, raised to 20,
			// and has not committed yet: the next flush waits for it.
			tx, err := s.Pool().Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
			_, err = tx.Exec(ctx, `UPDATE flush_marks SET seq = 20 WHERE node_id = 'n1'`)
			require.NoError(t, err)
			e := newMessage("c", time.Now())
			done := make(chan int, 1)
			go func() {
				res, err := s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: []*store.Message{e}, Node: "n1", Seq: 20, Seqs: []uint64{20}})
				if err != nil {
					t.Error(err)
				}
				done <- res.Inserted
			}()
			select {
			case n := <-done:
				t.Fatalf("the flush did not wait for the transaction holding the mark; it inserted %d", n)
			case <-time.After(300 * time.Millisecond):
			}
			require.NoError(t, tx.Commit(ctx))
			require.Equal(t, 0, <-done, "the flush wrote a message at or below the mark it waited for")
		})
	}
}

// TestFlushNeedsSequences checks that a flush without a sequence for each
// message is refused, not written without the mark's protection.
func TestFlushNeedsSequences(t *testing.T) {
	s := openWith(t, postgres.Options{Region: "eu"})
	_, err := s.MessageInsertMany(context.Background(), &store.MessageInsertManyParams{
		Messages: []*store.Message{newMessage("c", time.Now())}, Node: "n1", Seq: 1})
	require.ErrorContains(t, err, "0 sequences for 1 messages")
}

// TestFlushCancelledMidCommit replays what happens when the flush activity
// reaches a node: the worker cancels the node's in-process flush, perhaps
// while its commit is on its way, and the activity's run flushes at once.
// pgx gives up on the commit when the context ends and sends a cancel
// request, which a commit already writing its WAL record does not heed:
// PostgreSQL finishes it. Here a deferred trigger holds the commit for a
// second and ignores the cancel, as such a commit does. Meanwhile the
// next run reads the old mark and flushes the same batch again, and a
// consumer acks one of its messages as soon as the first commit shows. That
// message must not come back. (Before the flush locked its mark, the second
// run's COPY failed on the ids of the first, and its row-by-row INSERT, held
// here for 300 ms, put the acked message back: this test failed.)
func TestFlushCancelledMidCommit(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, postgres.Options{Region: "eu", CopyMin: 1, Logger: slog.New(slog.DiscardHandler)})
	_, err := s.Pool().Exec(ctx, `CREATE TABLE slow_commits (n int); INSERT INTO slow_commits VALUES (1);
		CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE
			deadline timestamptz := clock_timestamp() + interval '1 s';
		BEGIN
			IF (SELECT n FROM slow_commits) > 0 THEN
				UPDATE slow_commits SET n = n - 1;
				WHILE clock_timestamp() < deadline LOOP
					BEGIN
						PERFORM pg_sleep(0.05);
					EXCEPTION WHEN query_canceled THEN
						NULL;
					END;
				END LOOP;
			END IF;
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON flush_marks
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
		CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_query() ILIKE 'INSERT INTO messages%' THEN
				PERFORM pg_sleep(0.3);
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER slow_insert BEFORE INSERT ON messages FOR EACH STATEMENT EXECUTE FUNCTION slow_insert()`)
	require.NoError(t, err)

	buf := buffer.NewMemory(buffer.MemoryConfig{})
	msgs := make([]*store.Message, 10)
	for i := range msgs {
		msgs[i] = newMessage("c", time.Now())
	}
	require.NoError(t, buf.Append(ctx, msgs))
	f := buffer.NewFlusher(buf, s, buffer.FlusherConfig{Node: "n1", Logger: slog.New(slog.DiscardHandler)})
	count := func() (n int) {
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n))
		return n
	}

	// The in-process flush, cancelled while its commit sleeps.
	ctx1, cancel1 := context.WithCancel(ctx)
	done1 := make(chan error, 1)
	go func() { done1 <- f.Run(ctx1, nil) }()
	require.Eventually(t, func() bool {
		var sleeping int
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'`).Scan(&sleeping))
		return sleeping > 0
	}, 10*time.Second, 2*time.Millisecond, "the first flush's commit never began")
	cancel1()
	require.ErrorIs(t, <-done1, context.Canceled)
	require.Zero(t, count(), "the first commit is still on its way")

	// The activity's run, at once; an ack as soon as the first commit shows.
	ctx2, cancel2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- f.Run(ctx2, nil) }()
	require.Eventually(t, func() bool { return count() == len(msgs) }, 10*time.Second, 2*time.Millisecond)
	require.NoError(t, s.MessageDelete(ctx, msgs[0].ID))
	require.Eventually(t, func() bool { return buf.Stats().Depth == 0 }, 10*time.Second, 5*time.Millisecond)
	cancel2()
	require.ErrorIs(t, <-done2, context.Canceled)

	_, err = s.MessageGet(ctx, msgs[0].ID)
	require.ErrorIs(t, err, store.ErrNotFound, "an acked message came back")
	require.Equal(t, len(msgs)-1, count())
}

// A flush by COPY decides what is due by the database's clock, as the
// scheduler and the polls do. The database here runs an hour behind the
// node: now() resolves to a function of a schema searched before
// pg_catalog. A message due half an hour ago by the node's clock is not
// due yet by the database's, and must not be READY.
func TestCopyDueByTheDatabaseClock(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `CREATE SCHEMA slow;
		CREATE FUNCTION slow.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$ SELECT pg_catalog.now() - interval '1 hour' $$`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	u, err := neturl.Parse(url)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", "slow,public,pg_catalog") // a runtime parameter to pgx
	u.RawQuery = q.Encode()
	s, err := postgres.Open(ctx, u.String(), postgres.Options{Region: "eu", CopyMin: 1})
	require.NoError(t, err)
	t.Cleanup(s.Close)

	for _, node := range []string{"", "n1"} {
		early, due := newMessage("c", time.Now().Add(-30*time.Minute)), newMessage("c", time.Now().Add(-2*time.Hour))
		p := &store.MessageInsertManyParams{Messages: []*store.Message{early, due}}
		if node != "" {
			p.Node, p.Seq, p.Seqs = node, 2, []uint64{1, 2}
		}
		res, err := s.MessageInsertMany(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 2, res.Inserted)
		got, err := s.MessageGet(ctx, early.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusPending, got.Status, "node %q: due by the node's clock only", node)
		got, err = s.MessageGet(ctx, due.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusReady, got.Status, "node %q", node)
	}
}
