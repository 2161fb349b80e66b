package postgres_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

type bundle struct {
	ctx   context.Context
	store *postgres.Store
	url   string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	url := pgtest.URL(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, url, postgres.Options{Region: "eu"})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return &bundle{ctx: ctx, store: s, url: url}
}

func newMessage(channel string, at time.Time) *store.Message {
	return &store.Message{
		ID: uuid.Must(uuid.NewV7()), Channel: channel, Payload: []byte(`{"n":1}`),
		ScheduledAt: at, MaxAttempts: 3, CreatedAt: time.Now(),
	}
}

func (b *bundle) insert(t *testing.T, msgs ...*store.Message) {
	t.Helper()
	res, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: msgs})
	require.NoError(t, err)
	require.Equal(t, len(msgs), res.Inserted)
}

func (b *bundle) poll(t *testing.T, channel string, max int, vis time.Duration) []*store.Message {
	t.Helper()
	msgs, err := b.store.MessagePoll(b.ctx, &store.MessagePollParams{Channel: channel, Max: max, Visibility: vis, Region: "eu"})
	require.NoError(t, err)
	return msgs
}

func receipts(msgs []*store.Message) []store.Receipt {
	rs := make([]store.Receipt, len(msgs))
	for i, m := range msgs {
		rs[i] = store.Receipt{ID: m.ID, Token: m.LeaseToken}
	}
	return rs
}

func TestInsertGetDelete(t *testing.T) {
	b := setup(t)
	due := newMessage("orders", time.Now().Add(-time.Second))
	later := newMessage("orders", time.Now().Add(time.Hour))
	b.insert(t, due, later)

	got, err := b.store.MessageGet(b.ctx, due.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, got.Status, "a message already due is inserted READY")
	require.Equal(t, "eu", got.Region)
	require.JSONEq(t, `{"n":1}`, string(got.Payload))

	got, err = b.store.MessageGet(b.ctx, later.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusPending, got.Status)

	// Replaying the same rows (a WAL replay after a crash) inserts nothing.
	res, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: []*store.Message{due, later}})
	require.NoError(t, err)
	require.Zero(t, res.Inserted)

	require.NoError(t, b.store.MessageDelete(b.ctx, later.ID))
	require.ErrorIs(t, b.store.MessageDelete(b.ctx, later.ID), store.ErrNotFound)
	_, err = b.store.MessageGet(b.ctx, later.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	names, err := b.store.ChannelList(b.ctx, 10, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"orders"}, names)
}

func TestDedup(t *testing.T) {
	b := setup(t)
	first := newMessage("mail", time.Now().Add(time.Hour))
	first.DedupKey = "k1"
	b.insert(t, first)

	again := newMessage("mail", time.Now().Add(time.Hour))
	again.DedupKey = "k1"
	other := newMessage("sms", time.Now().Add(time.Hour))
	other.DedupKey = "k1" // same key, other channel: not a duplicate
	res, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: []*store.Message{again, other}})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	require.Equal(t, map[int]uuid.UUID{0: first.ID}, res.Existing)
	_, err = b.store.MessageGet(b.ctx, again.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A create whose dedup key is taken at the insert, by a message that is
// gone by the lookup of its holder (acked meanwhile), is inserted after
// all: it was reported created with an id nothing stored.
func TestDedupHolderGoneBeforeTheLookup(t *testing.T) {
	b := setup(t)
	first := newMessage("mail", time.Now())
	first.DedupKey = "k1"
	b.insert(t, first)
	leased := b.poll(t, "mail", 1, time.Minute)
	require.Len(t, leased, 1)
	acked := false
	postgres.SetDedupRaced(t, func() {
		if !acked {
			acked = true
			_, err := b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: receipts(leased)})
			require.NoError(t, err)
		}
	})

	again := newMessage("mail", time.Now().Add(time.Hour))
	again.DedupKey = "k1"
	res, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: []*store.Message{again}})
	require.NoError(t, err)
	require.True(t, acked)
	require.Equal(t, 1, res.Inserted)
	require.Empty(t, res.Existing)
	got, err := b.store.MessageGet(b.ctx, again.ID)
	require.NoError(t, err, "reported created, so stored")
	require.Equal(t, "k1", got.DedupKey)
}

func TestFlushMark(t *testing.T) {
	b := setup(t)
	mark, err := b.store.FlushMark(b.ctx, "node-1")
	require.NoError(t, err)
	require.Zero(t, mark)
	_, err = b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Node: "node-1", Seq: 42, Seqs: []uint64{42},
		Messages: []*store.Message{newMessage("a", time.Now())}})
	require.NoError(t, err)
	mark, err = b.store.FlushMark(b.ctx, "node-1")
	require.NoError(t, err)
	require.EqualValues(t, 42, mark)
	// The mark never goes back.
	_, err = b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Node: "node-1", Seq: 7})
	require.NoError(t, err)
	mark, err = b.store.FlushMark(b.ctx, "node-1")
	require.NoError(t, err)
	require.EqualValues(t, 42, mark)
}

func TestLifecycleAckNackDLQ(t *testing.T) {
	b := setup(t)
	m := newMessage("jobs", time.Now())
	m.MaxAttempts = 2
	b.insert(t, m)

	got := b.poll(t, "jobs", 10, time.Minute)
	require.Len(t, got, 1)
	require.Equal(t, store.StatusAcquired, got[0].Status)
	require.Equal(t, 1, got[0].Attempts)
	require.NotEqual(t, uuid.Nil, got[0].LeaseToken)
	require.Empty(t, b.poll(t, "jobs", 10, time.Minute), "a leased message is not handed out twice")

	// Nack with an explicit delay of zero: PENDING again, due now.
	zero := time.Duration(0)
	counts, err := b.store.MessageNack(b.ctx, &store.MessageNackParams{Receipts: receipts(got), Delay: &zero, Reason: "boom"})
	require.NoError(t, err)
	require.Equal(t, store.Counts{"jobs": 1}, counts)
	p, err := b.store.MessagePromote(b.ctx, &store.MessagePromoteParams{Region: "eu", Limit: 100})
	require.NoError(t, err)
	require.Equal(t, 1, p.Count)

	got = b.poll(t, "jobs", 10, time.Minute)
	require.Len(t, got, 1)
	require.Equal(t, 2, got[0].Attempts)
	require.Equal(t, "boom", got[0].LastError)

	// The second failure exhausts max_attempts: dead-lettered, ready at once.
	counts, err = b.store.MessageNack(b.ctx, &store.MessageNackParams{IDs: []uuid.UUID{m.ID}, Reason: "boom again"})
	require.NoError(t, err)
	require.Equal(t, store.Counts{"jobs": 1}, counts, "a dead-lettered message counts under the channel it was polled from")
	dead := b.poll(t, "jobs.DLQ", 10, time.Minute)
	require.Len(t, dead, 1)
	require.Equal(t, m.ID, dead[0].ID)
	require.Equal(t, "jobs", dead[0].OriginalChannel)
	require.Equal(t, "boom again", dead[0].LastError)
	names, err := b.store.ChannelList(b.ctx, 10, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"jobs", "jobs.DLQ"}, names)

	counts, err = b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: receipts(dead)})
	require.NoError(t, err)
	require.Equal(t, store.Counts{"jobs.DLQ": 1}, counts)
	_, err = b.store.MessageGet(b.ctx, m.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestNackBackoff(t *testing.T) {
	b := setup(t)
	m := newMessage("jobs", time.Now())
	b.insert(t, m)
	got := b.poll(t, "jobs", 1, time.Minute)
	before := time.Now()
	_, err := b.store.MessageNack(b.ctx, &store.MessageNackParams{Receipts: receipts(got),
		Backoff: store.Backoff{Base: 10 * time.Second, Factor: 2, Cap: time.Hour}})
	require.NoError(t, err)
	after, err := b.store.MessageGet(b.ctx, m.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusPending, after.Status)
	// First retry: base 10 s with jitter over its upper half: 5–10 s.
	require.WithinRange(t, after.ScheduledAt, before.Add(4*time.Second), before.Add(11*time.Second))
}

func TestStaleReceipt(t *testing.T) {
	b := setup(t)
	m := newMessage("jobs", time.Now())
	b.insert(t, m)
	first := b.poll(t, "jobs", 1, time.Millisecond)
	require.Len(t, first, 1)

	// The lease expires; the janitor puts the message back; another consumer
	// takes it.
	require.Eventually(t, func() bool {
		r, err := b.store.MessageRecover(b.ctx, &store.MessageRecoverParams{Region: "eu", Limit: 10,
			Backoff: store.Backoff{Base: time.Millisecond, Cap: time.Millisecond}})
		require.NoError(t, err)
		return r.Retried == 1
	}, 5*time.Second, 5*time.Millisecond)
	var second []*store.Message
	require.Eventually(t, func() bool {
		_, err := b.store.MessagePromote(b.ctx, &store.MessagePromoteParams{Region: "eu", Limit: 10})
		require.NoError(t, err)
		second = b.poll(t, "jobs", 1, time.Minute)
		return len(second) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.NotEqual(t, first[0].LeaseToken, second[0].LeaseToken)

	// The first consumer's receipt is stale: ack, nack and extend refuse it
	// and change nothing, even mixed with a good receipt.
	_, err := b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: receipts(first)})
	require.ErrorIs(t, err, store.ErrStaleLease)
	_, err = b.store.MessageNack(b.ctx, &store.MessageNackParams{Receipts: receipts(first)})
	require.ErrorIs(t, err, store.ErrStaleLease)
	_, err = b.store.MessageExtend(b.ctx, &store.MessageExtendParams{Receipts: receipts(first), Visibility: time.Hour})
	require.ErrorIs(t, err, store.ErrStaleLease)
	other := newMessage("jobs", time.Now())
	b.insert(t, other)
	third := b.poll(t, "jobs", 1, time.Minute)
	_, err = b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: append(receipts(third), receipts(first)...)})
	require.ErrorIs(t, err, store.ErrStaleLease)
	still, err := b.store.MessageGet(b.ctx, other.ID)
	require.NoError(t, err, "all or nothing: the good receipt was not acked either")
	require.Equal(t, store.StatusAcquired, still.Status)

	held, err := b.store.MessageGet(b.ctx, m.ID)
	require.NoError(t, err)
	require.Equal(t, second[0].LeaseToken, held.LeaseToken)
	require.Equal(t, store.StatusAcquired, held.Status)

	n, err := b.store.MessageExtend(b.ctx, &store.MessageExtendParams{Receipts: receipts(second), Visibility: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	counts, err := b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: receipts(second)})
	require.NoError(t, err)
	require.Equal(t, store.Counts{"jobs": 1}, counts)
}

// TestCrossedReceipts checks that a receipt names an id and a token
// together: ids and tokens that are each current, but paired crosswise, are
// refused as stale and change nothing.
func TestCrossedReceipts(t *testing.T) {
	b := setup(t)
	b.insert(t, newMessage("jobs", time.Now()), newMessage("jobs", time.Now()))
	leased := b.poll(t, "jobs", 2, time.Minute)
	require.Len(t, leased, 2)
	x, y := leased[0], leased[1]
	crossed := []store.Receipt{{ID: x.ID, Token: y.LeaseToken}, {ID: y.ID, Token: x.LeaseToken}}
	twice := []store.Receipt{{ID: x.ID, Token: x.LeaseToken}, {ID: x.ID, Token: y.LeaseToken}}
	for _, rs := range [][]store.Receipt{crossed, twice} {
		_, err := b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: rs})
		require.ErrorIs(t, err, store.ErrStaleLease)
		_, err = b.store.MessageNack(b.ctx, &store.MessageNackParams{Receipts: rs})
		require.ErrorIs(t, err, store.ErrStaleLease)
		_, err = b.store.MessageExtend(b.ctx, &store.MessageExtendParams{Receipts: rs, Visibility: time.Hour})
		require.ErrorIs(t, err, store.ErrStaleLease)
	}
	for _, m := range leased {
		got, err := b.store.MessageGet(b.ctx, m.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusAcquired, got.Status)
		require.Equal(t, m.LeaseToken, got.LeaseToken)
		require.WithinDuration(t, m.LeasedUntil, got.LeasedUntil, time.Millisecond, "not extended")
	}
	counts, err := b.store.MessageNack(b.ctx, &store.MessageNackParams{Receipts: receipts(leased)})
	require.NoError(t, err)
	require.Equal(t, store.Counts{"jobs": 2}, counts)
}

func TestRecoverDeadLetters(t *testing.T) {
	b := setup(t)
	m := newMessage("jobs", time.Now())
	m.MaxAttempts = 1
	b.insert(t, m)
	require.Len(t, b.poll(t, "jobs", 1, time.Millisecond), 1)
	require.Eventually(t, func() bool {
		r, err := b.store.MessageRecover(b.ctx, &store.MessageRecoverParams{Region: "eu", Limit: 10})
		require.NoError(t, err)
		return r.DeadLettered == 1
	}, 5*time.Second, 5*time.Millisecond)
	dead := b.poll(t, "jobs.DLQ", 1, time.Minute)
	require.Len(t, dead, 1)
	require.Equal(t, "lease expired", dead[0].LastError)
}

func TestPromoteAndNextDue(t *testing.T) {
	b := setup(t)
	soon := newMessage("c", time.Now().Add(300*time.Millisecond))
	later := newMessage("c", time.Now().Add(time.Hour))
	other := newMessage("c", time.Now().Add(-time.Second))
	other.Region = "us"
	b.insert(t, soon, later)
	_, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: []*store.Message{other}})
	require.NoError(t, err)

	p, err := b.store.MessagePromote(b.ctx, &store.MessagePromoteParams{Region: "eu", Limit: 100})
	require.NoError(t, err)
	require.Zero(t, p.Count)
	require.WithinDuration(t, soon.ScheduledAt, p.NextDue, time.Millisecond)

	ready, cancel := b.store.Subscribe(store.ReadyTopic("c"))
	defer cancel()
	time.Sleep(time.Until(soon.ScheduledAt))
	p, err = b.store.MessagePromote(b.ctx, &store.MessagePromoteParams{Region: "eu", Limit: 100})
	require.NoError(t, err)
	require.Equal(t, 1, p.Count)
	require.Len(t, p.Lateness, 1)
	require.GreaterOrEqual(t, p.Lateness[0], time.Duration(0))
	require.WithinDuration(t, later.ScheduledAt, p.NextDue, time.Millisecond)
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("promotion did not wake the channel's long polls")
	}
}

func TestUpdate(t *testing.T) {
	b := setup(t)
	m := newMessage("c", time.Now().Add(time.Hour))
	b.insert(t, m)
	at := time.Now().Add(-time.Second)
	got, err := b.store.MessageUpdate(b.ctx, &store.MessageUpdateParams{ID: m.ID, ScheduledAt: &at, Payload: []byte(`"new"`)})
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, got.Status, "rescheduled into the past: ready at once")
	require.Equal(t, `"new"`, string(got.Payload))

	leased := b.poll(t, "c", 1, time.Minute)
	require.Len(t, leased, 1)
	_, err = b.store.MessageUpdate(b.ctx, &store.MessageUpdateParams{ID: m.ID, Payload: []byte(`1`)})
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = b.store.MessageUpdate(b.ctx, &store.MessageUpdateParams{ID: uuid.New(), Payload: []byte(`1`)})
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestConcurrentConsumersGetDistinctMessages(t *testing.T) {
	b := setup(t)
	const total = 2000
	msgs := make([]*store.Message, total)
	for i := range msgs {
		msgs[i] = newMessage("fan", time.Now().Add(-time.Second))
	}
	b.insert(t, msgs...)

	var (
		mu   sync.Mutex
		seen = map[uuid.UUID]int{}
		wg   sync.WaitGroup
	)
	for range 20 {
		wg.Go(func() {
			for {
				got, err := b.store.MessagePoll(b.ctx, &store.MessagePollParams{Channel: "fan", Max: 7, Visibility: time.Minute, Region: "eu"})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
				if _, err := b.store.MessageAck(b.ctx, &store.MessageAckParams{Receipts: receipts(got)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, total, "every message delivered")
	for id, n := range seen {
		require.Equal(t, 1, n, "message %s delivered %d times", id, n)
	}
}

func TestPollRegions(t *testing.T) {
	b := setup(t)
	local := newMessage("r", time.Now().Add(-time.Second))
	remote := newMessage("r", time.Now().Add(-2*time.Second)) // older, but remote
	remote.Region = "us"
	b.insert(t, local)
	_, err := b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: []*store.Message{remote}})
	require.NoError(t, err)

	got := b.poll(t, "r", 10, time.Minute)
	require.Len(t, got, 1, "local messages first, others only when asked or when none is local")
	require.Equal(t, local.ID, got[0].ID)
	got = b.poll(t, "r", 10, time.Minute)
	require.Len(t, got, 1, "the local region is empty: other regions' messages are served")
	require.Equal(t, remote.ID, got[0].ID)

	a, c := newMessage("s", time.Now()), newMessage("s", time.Now())
	c.Region = "us"
	b.insert(t, a)
	_, err = b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: []*store.Message{c}})
	require.NoError(t, err)
	got, err = b.store.MessagePoll(b.ctx, &store.MessagePollParams{Channel: "s", Max: 10, Visibility: time.Minute, Region: "eu", Subsidize: true})
	require.NoError(t, err)
	require.Len(t, got, 2, "subsidize fills max from other regions")
}

func TestMessageRegions(t *testing.T) {
	b := setup(t)
	regions, err := b.store.MessageRegions(b.ctx)
	require.NoError(t, err)
	require.Empty(t, regions)
	var msgs []*store.Message
	for _, r := range []string{"us", "eu", "ap", "us"} {
		m := newMessage("c", time.Now().Add(time.Hour))
		m.Region = r
		msgs = append(msgs, m)
	}
	ready := newMessage("c", time.Now().Add(-time.Second))
	ready.Region = "sa" // READY only: nothing left for a scheduler or janitor
	_, err = b.store.MessageInsertMany(b.ctx, &store.MessageInsertManyParams{Messages: append(msgs, ready)})
	require.NoError(t, err)
	regions, err = b.store.MessageRegions(b.ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ap", "eu", "us"}, regions)
}

func TestMessageCountsAndDeadLetterHook(t *testing.T) {
	url := pgtest.URL(t)
	var dead []string
	var mu sync.Mutex
	s, err := postgres.Open(context.Background(), url, postgres.Options{Region: "eu", OnDeadLetter: func(ch string) {
		mu.Lock()
		dead = append(dead, ch)
		mu.Unlock()
	}})
	require.NoError(t, err)
	defer s.Close()
	b := &bundle{ctx: context.Background(), store: s, url: url}
	m := newMessage("jobs", time.Now())
	m.MaxAttempts = 1
	b.insert(t, m, newMessage("jobs", time.Now().Add(time.Hour)))
	got := b.poll(t, "jobs", 10, time.Minute)
	_, err = s.MessageNack(b.ctx, &store.MessageNackParams{Receipts: receipts(got)})
	require.NoError(t, err)
	require.Equal(t, []string{"jobs"}, dead)

	counts, err := s.MessageCounts(b.ctx)
	require.NoError(t, err)
	require.Equal(t, map[[2]string]int64{{"jobs", "PENDING"}: 1, {"jobs.DLQ", "READY"}: 1}, counts)
}

func TestNodes(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.store.NodeHeartbeat(b.ctx, &store.Node{ID: "n1", Region: "eu", Version: "v1"}))
	require.NoError(t, b.store.NodeHeartbeat(b.ctx, &store.Node{ID: "n2", Region: "us", Version: "v1"}))
	nodes, err := b.store.NodeList(b.ctx, 10, 0)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	require.Equal(t, store.NodeActive, nodes[0].Status)

	// n1 went silent two minutes ago; n2 is live.
	_, err = b.store.Pool().Exec(b.ctx, `UPDATE nodes SET last_heartbeat = now() - interval '2 minutes' WHERE id = 'n1'`)
	require.NoError(t, err)
	stale, err := b.store.NodeMarkStale(b.ctx, time.Minute)
	require.NoError(t, err)
	require.Len(t, stale, 1)
	require.Equal(t, "n1", stale[0].ID)

	require.NoError(t, b.store.NodeDelete(b.ctx, "n1"))
	nodes, err = b.store.NodeList(b.ctx, 10, 0)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
}

// NodeList serves the page it read for NodeListTTL, so that health checks
// do not query the database each time; a write through the same Store
// shows at once, one through another node's Store once the TTL is over.
func TestNodeListCache(t *testing.T) {
	b := setup(t)
	open := func(ttl time.Duration) *postgres.Store {
		s, err := postgres.Open(b.ctx, b.url, postgres.Options{NodeListTTL: ttl})
		require.NoError(t, err)
		t.Cleanup(s.Close)
		return s
	}
	ids := func(s *postgres.Store) []string {
		nodes, err := s.NodeList(b.ctx, 10, 0)
		require.NoError(t, err)
		var out []string
		for _, n := range nodes {
			out = append(out, n.ID)
		}
		return out
	}
	cached, short, other := open(time.Hour), open(50*time.Millisecond), open(-1)

	require.NoError(t, cached.NodeHeartbeat(b.ctx, &store.Node{ID: "a", Version: "v1"}))
	require.Equal(t, []string{"a"}, ids(cached))
	require.Equal(t, []string{"a"}, ids(short))

	// Another node registers: the hour-long cache keeps its page, the short
	// one sees the node once its TTL is over, an uncached Store at once.
	require.NoError(t, other.NodeHeartbeat(b.ctx, &store.Node{ID: "b", Version: "v1"}))
	require.Equal(t, []string{"a", "b"}, ids(other))
	require.Equal(t, []string{"a"}, ids(cached))
	require.Eventually(t, func() bool { return len(ids(short)) == 2 }, 5*time.Second, 10*time.Millisecond)

	// A different page is not served from the cache.
	nodes, err := cached.NodeList(b.ctx, 1, 1)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	require.Equal(t, "b", nodes[0].ID)

	// Writes through the cached Store empty its cache.
	require.NoError(t, cached.NodeHeartbeat(b.ctx, &store.Node{ID: "c", Version: "v1"}))
	require.Equal(t, []string{"a", "b", "c"}, ids(cached))
	require.NoError(t, cached.NodeDelete(b.ctx, "b"))
	require.Equal(t, []string{"a", "c"}, ids(cached))
	_, err = b.store.Pool().Exec(b.ctx, `UPDATE nodes SET last_heartbeat = now() - interval '2 minutes' WHERE id = 'c'`)
	require.NoError(t, err)
	stale, err := cached.NodeMarkStale(b.ctx, time.Minute)
	require.NoError(t, err)
	require.Len(t, stale, 1)
	nodes, err = cached.NodeList(b.ctx, 10, 0)
	require.NoError(t, err)
	require.Equal(t, store.NodeStale, nodes[1].Status)

	// What the cache hands out is a copy.
	nodes[0].ID = "changed"
	require.Equal(t, []string{"a", "c"}, ids(cached))
}

func TestChannelStats(t *testing.T) {
	b := setup(t)
	b.insert(t, newMessage("st", time.Now().Add(-time.Minute)), newMessage("st", time.Now().Add(90*time.Minute)),
		newMessage("st", time.Now().Add(30*time.Hour)))
	st, err := b.store.ChannelStats(b.ctx, "st")
	require.NoError(t, err)
	require.EqualValues(t, 1, st.ByStatus[store.StatusReady])
	require.EqualValues(t, 2, st.ByStatus[store.StatusPending])
	require.False(t, st.OldestDue.IsZero())
	require.EqualValues(t, 1, st.DueByHour[1])
}

func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable", postgres.Options{Dialect: "postgres", ConnectTimeout: time.Second})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.MessageGet(ctx, uuid.New())
	require.ErrorIs(t, err, store.ErrUnavailable)
}
