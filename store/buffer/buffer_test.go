package buffer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/smq/smq/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// capacity is what a test asks of the buffer it opens; zero means default.
type capacity struct {
	maxDepth int
	maxBytes int64
}

type opener func(t *testing.T, c capacity) store.Buffer

func TestMemory(t *testing.T) {
	testBuffer(t, func(t *testing.T, c capacity) store.Buffer {
		return NewMemory(MemoryConfig{MaxDepth: c.maxDepth, MaxBytes: c.maxBytes})
	})
}

func TestWAL(t *testing.T) {
	testBuffer(t, func(t *testing.T, c capacity) store.Buffer {
		return openWAL(t, WALConfig{Dir: t.TempDir(), MaxDepth: c.maxDepth, MaxBytes: c.maxBytes})
	})
}

var discardLogger = slog.New(slog.DiscardHandler)

// openWAL opens a WAL that is closed at the test's end.
func openWAL(t testing.TB, cfg WALConfig) *WAL {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	w, err := OpenWAL(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	return w
}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

// newMessage returns a message whose fields all survive the WAL unchanged.
func newMessage(i int) *store.Message {
	return &store.Message{
		ID:          uuid.New(),
		Channel:     "orders",
		Payload:     fmt.Appendf(nil, `{"i":%d}`, i),
		Status:      store.StatusPending,
		ScheduledAt: epoch.Add(time.Duration(i) * time.Second),
		MaxAttempts: 10,
		CreatedAt:   epoch,
		UpdatedAt:   epoch,
		Region:      "eu",
	}
}

func newMessages(n int) []*store.Message {
	msgs := make([]*store.Message, n)
	for i := range msgs {
		msgs[i] = newMessage(i)
	}
	return msgs
}

func ids(msgs []*store.Message) []uuid.UUID {
	out := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// receive waits for one value of ch, failing the test after a deadline.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, "timed out waiting")
		panic("unreachable")
	}
}

// testBuffer is the behaviour every store.Buffer shares.
func testBuffer(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("AppendGetDeleteUpdate", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(3)
		require.NoError(t, buf.Append(ctx, msgs))
		for _, m := range msgs {
			got, ok := buf.Get(m.ID)
			require.True(t, ok)
			require.Equal(t, m, got)
		}
		_, ok := buf.Get(uuid.New())
		require.False(t, ok)

		// Get returns a copy: changing it changes nothing buffered.
		got, _ := buf.Get(msgs[0].ID)
		got.Payload[0] = 'X'
		got.Channel = "other"
		again, _ := buf.Get(msgs[0].ID)
		require.Equal(t, msgs[0], again)

		deleted, err := buf.Delete(ctx, msgs[0].ID)
		require.NoError(t, err)
		require.True(t, deleted)
		_, ok = buf.Get(msgs[0].ID)
		require.False(t, ok)
		deleted, err = buf.Delete(ctx, msgs[0].ID)
		require.NoError(t, err)
		require.False(t, deleted)

		later := epoch.Add(time.Hour)
		updated, ok, err := buf.Update(ctx, msgs[1].ID, func(m *store.Message) {
			m.ScheduledAt = later
			m.Payload = []byte(`"bigger payload"`)
		})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, later, updated.ScheduledAt)
		got, _ = buf.Get(msgs[1].ID)
		require.Equal(t, updated, got)
		require.Equal(t, `"bigger payload"`, string(got.Payload))

		_, ok, err = buf.Update(ctx, uuid.New(), func(*store.Message) {})
		require.NoError(t, err)
		require.False(t, ok)

		_, _, err = buf.Update(ctx, msgs[2].ID, func(m *store.Message) { m.ID = uuid.New() })
		require.Error(t, err)

		st := buf.Stats()
		require.Equal(t, 2, st.Depth)
		require.Equal(t, int64(len(`"bigger payload"`)+len(msgs[2].Payload)), st.Bytes)
	})

	t.Run("BatchOrderAndWatermark", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(10)
		require.NoError(t, buf.Append(ctx, msgs[:3]))
		require.NoError(t, buf.Append(ctx, msgs[3:4]))
		require.NoError(t, buf.Append(ctx, msgs[4:]))

		b := buf.Next(4)
		require.NotNil(t, b)
		require.Equal(t, ids(msgs[:4]), ids(b.Messages))
		// Each message's sequence, ascending, the last one the watermark.
		require.Len(t, b.Seqs, 4)
		for i := 1; i < len(b.Seqs); i++ {
			require.Greater(t, b.Seqs[i], b.Seqs[i-1], "%v", b.Seqs)
		}
		require.Equal(t, b.Seq, b.Seqs[3])
		require.Nil(t, buf.Next(100), "only one batch may be in flight")

		// Records appended while a batch is in flight come after it.
		late := newMessage(10)
		require.NoError(t, buf.Append(ctx, []*store.Message{late}))
		require.NoError(t, buf.Commit(ctx, b))
		require.Error(t, buf.Commit(ctx, b), "a batch commits once")
		for _, m := range msgs[:4] {
			_, ok := buf.Get(m.ID)
			require.False(t, ok)
		}

		b2 := buf.Next(100)
		require.NotNil(t, b2)
		require.Equal(t, ids(append(msgs[4:], late)), ids(b2.Messages))
		require.Greater(t, b2.Seq, b.Seq)
		require.Greater(t, b2.Seqs[0], b.Seq)
		require.Equal(t, b2.Seq, b2.Seqs[len(b2.Seqs)-1])
		require.NoError(t, buf.Commit(ctx, b2))
		require.Nil(t, buf.Next(100))
		require.Equal(t, 0, buf.Stats().Depth)

		require.Nil(t, buf.Next(0))
	})

	t.Run("DeleteOfInFlightWaitsForCommit", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(2)
		require.NoError(t, buf.Append(ctx, msgs))
		b := buf.Next(1)
		require.Equal(t, ids(msgs[:1]), ids(b.Messages))

		// A record outside the batch changes at once.
		deleted, err := buf.Delete(ctx, msgs[1].ID)
		require.NoError(t, err)
		require.True(t, deleted)

		// One in the batch waits, as long as ctx lets it.
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err = buf.Delete(short, msgs[0].ID)
		require.ErrorIs(t, err, context.DeadlineExceeded)

		done := make(chan bool)
		go func() {
			deleted, err := buf.Delete(ctx, msgs[0].ID)
			require.NoError(t, err)
			done <- deleted
		}()
		require.NoError(t, buf.Commit(ctx, b))
		require.False(t, receive(t, done), "a committed record is in the database")
	})

	t.Run("DeleteOfInFlightAppliesAfterRelease", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(3)
		require.NoError(t, buf.Append(ctx, msgs))
		b := buf.Next(2)
		done := make(chan bool)
		go func() {
			deleted, err := buf.Delete(ctx, msgs[0].ID)
			require.NoError(t, err)
			done <- deleted
		}()
		buf.Release(b)
		require.True(t, receive(t, done))
		b = buf.Next(10)
		require.Equal(t, ids(msgs[1:]), ids(b.Messages))
	})

	t.Run("UpdateOfInFlightWaitsForCommit", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(1)
		require.NoError(t, buf.Append(ctx, msgs))
		b := buf.Next(1)

		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, _, err := buf.Update(short, msgs[0].ID, func(m *store.Message) { m.Attempts = 1 })
		require.ErrorIs(t, err, context.DeadlineExceeded)

		done := make(chan bool)
		go func() {
			_, ok, err := buf.Update(ctx, msgs[0].ID, func(m *store.Message) { m.Attempts = 2 })
			require.NoError(t, err)
			done <- ok
		}()
		require.NoError(t, buf.Commit(ctx, b))
		require.False(t, receive(t, done))
	})

	t.Run("UpdateOfInFlightAppliesAfterRelease", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(2)
		require.NoError(t, buf.Append(ctx, msgs))
		b := buf.Next(2)
		done := make(chan bool)
		go func() {
			_, ok, err := buf.Update(ctx, msgs[1].ID, func(m *store.Message) { m.Attempts = 7 })
			require.NoError(t, err)
			done <- ok
		}()
		buf.Release(b)
		require.True(t, receive(t, done))
		b = buf.Next(10)
		require.Equal(t, ids(msgs), ids(b.Messages), "an update keeps the record's place")
		require.Equal(t, 7, b.Messages[1].Attempts)
	})

	t.Run("ReleaseRedeliversInOrder", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(5)
		for _, m := range msgs {
			require.NoError(t, buf.Append(ctx, []*store.Message{m}))
		}
		b := buf.Next(3)
		require.Equal(t, ids(msgs[:3]), ids(b.Messages))
		buf.Release(b)
		buf.Release(b) // a second release is harmless
		b2 := buf.Next(10)
		require.Equal(t, ids(msgs), ids(b2.Messages))
		require.Equal(t, 5, buf.Stats().Depth)
	})

	t.Run("CapacityByCount", func(t *testing.T) {
		buf := open(t, capacity{maxDepth: 5})
		msgs := newMessages(6)
		require.NoError(t, buf.Append(ctx, msgs[:3]))
		require.ErrorIs(t, buf.Append(ctx, msgs[3:6]), store.ErrBufferFull)
		for _, m := range msgs[3:6] {
			_, ok := buf.Get(m.ID)
			require.False(t, ok, "a refused append records nothing")
		}
		st := buf.Stats()
		require.Equal(t, 3, st.Depth)
		require.Equal(t, 5, st.MaxDepth)
		require.NoError(t, buf.Append(ctx, msgs[3:5]))

		// Room comes back once a batch is committed.
		b := buf.Next(2)
		require.NoError(t, buf.Commit(ctx, b))
		require.NoError(t, buf.Append(ctx, msgs[5:]))
	})

	t.Run("CapacityByBytes", func(t *testing.T) {
		buf := open(t, capacity{maxBytes: 100})
		big := newMessage(0)
		big.Payload = make([]byte, 60)
		other := newMessage(1)
		other.Payload = make([]byte, 50)
		require.NoError(t, buf.Append(ctx, []*store.Message{big}))
		require.ErrorIs(t, buf.Append(ctx, []*store.Message{newMessage(2), other}), store.ErrBufferFull)
		st := buf.Stats()
		require.Equal(t, 1, st.Depth)
		require.Equal(t, int64(60), st.Bytes)
		require.Equal(t, int64(100), st.MaxBytes)
		other.Payload = make([]byte, 40)
		require.NoError(t, buf.Append(ctx, []*store.Message{other}))
	})

	t.Run("Discard", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(5)
		for _, m := range msgs {
			require.NoError(t, buf.Append(ctx, []*store.Message{m}))
		}
		b := buf.Next(2)
		buf.Release(b)
		require.NoError(t, buf.Discard(ctx, b.Seq))
		for _, m := range msgs[:2] {
			_, ok := buf.Get(m.ID)
			require.False(t, ok)
		}
		b = buf.Next(10)
		require.Equal(t, ids(msgs[2:]), ids(b.Messages))
		buf.Release(b)
		require.NoError(t, buf.Discard(ctx, 1), "a mark below every record drops nothing")
		require.Equal(t, 3, buf.Stats().Depth)
	})

	t.Run("DiscardRaisesTheNextSeq", func(t *testing.T) {
		// A mark ahead of the buffer's numbering (this node id's mark from
		// a run whose clock was ahead): what is appended next is numbered
		// above it, or every flush would skip it.
		buf := open(t, capacity{})
		mark := uint64(time.Now().Add(time.Hour).UnixNano())
		require.NoError(t, buf.Discard(ctx, mark))
		require.NoError(t, buf.Append(ctx, newMessages(2)))
		b := buf.Next(10)
		require.Len(t, b.Seqs, 2)
		require.Greater(t, b.Seqs[0], mark)
	})

	t.Run("DiscardWaitsForBatchInFlight", func(t *testing.T) {
		buf := open(t, capacity{})
		msgs := newMessages(2)
		require.NoError(t, buf.Append(ctx, msgs))
		b := buf.Next(1)
		done := make(chan error)
		go func() { done <- buf.Discard(ctx, b.Seq) }()
		buf.Release(b)
		require.NoError(t, receive(t, done))
		b = buf.Next(10)
		require.Equal(t, ids(msgs[1:]), ids(b.Messages))
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		buf := open(t, capacity{})
		const goroutines, appends = 16, 25
		var wg sync.WaitGroup
		sent := make([][]uuid.UUID, goroutines)
		for g := range goroutines {
			wg.Go(func() {
				for i := range appends {
					msgs := newMessages(1 + i%3)
					if err := buf.Append(ctx, msgs); err != nil {
						t.Error(err)
						return
					}
					sent[g] = append(sent[g], ids(msgs)...)
				}
			})
		}
		wg.Wait()
		want := map[uuid.UUID]bool{}
		for _, s := range sent {
			for _, id := range s {
				_, ok := buf.Get(id)
				require.True(t, ok)
				want[id] = true
			}
		}
		// Every record comes out once, each goroutine's in its order.
		pos := map[uuid.UUID]int{}
		var lastSeq uint64
		for b := buf.Next(37); b != nil; b = buf.Next(37) {
			require.Greater(t, b.Seq, lastSeq)
			lastSeq = b.Seq
			for _, m := range b.Messages {
				_, dup := pos[m.ID]
				require.False(t, dup)
				pos[m.ID] = len(pos)
			}
			require.NoError(t, buf.Commit(ctx, b))
		}
		require.Len(t, pos, len(want))
		for _, s := range sent {
			for i := 1; i < len(s); i++ {
				require.Less(t, pos[s[i-1]], pos[s[i]])
			}
		}
	})

	t.Run("Appended", func(t *testing.T) {
		buf := open(t, capacity{})
		select {
		case <-buf.Appended():
		default:
		}
		require.NoError(t, buf.Append(ctx, newMessages(1)))
		receive(t, buf.Appended())
		// Signals merge: many appends, at least one value, never a block.
		for range 5 {
			require.NoError(t, buf.Append(ctx, newMessages(1)))
		}
		receive(t, buf.Appended())
	})

	t.Run("CanceledContext", func(t *testing.T) {
		buf := open(t, capacity{})
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		msgs := newMessages(1)
		require.ErrorIs(t, buf.Append(canceled, msgs), context.Canceled)
		_, ok := buf.Get(msgs[0].ID)
		require.False(t, ok)
		require.Equal(t, 0, buf.Stats().Depth)
	})
}
