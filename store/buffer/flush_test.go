package buffer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// fakeSink is a database that keeps rows and flush marks in memory.
type fakeSink struct {
	mu    sync.Mutex
	rows  map[uuid.UUID]*store.Message
	dups  int // inserts of an id already present
	marks map[string]uint64
	calls []store.MessageInsertManyParams
	// before runs before an insert and fails it without recording anything;
	// after runs once it is recorded and makes the call fail anyway (a
	// commit whose answer was lost). Both take the 0-based call number.
	before func(call int) error
	after  func(call int) error
	// changed receives a value after each call.
	changed chan struct{}
}

func newFakeSink() *fakeSink {
	return &fakeSink{
		rows:    map[uuid.UUID]*store.Message{},
		marks:   map[string]uint64{},
		changed: make(chan struct{}, 1),
	}
}

func (s *fakeSink) MessageInsertMany(_ context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}()
	call := len(s.calls)
	s.calls = append(s.calls, store.MessageInsertManyParams{Messages: p.Messages, Node: p.Node, Seq: p.Seq, Seqs: p.Seqs})
	if s.before != nil {
		if err := s.before(call); err != nil {
			return nil, err
		}
	}
	res := &store.MessageInsertManyResult{}
	for _, m := range p.Messages {
		if _, ok := s.rows[m.ID]; ok {
			s.dups++
			continue
		}
		s.rows[m.ID] = m
		res.Inserted++
	}
	if p.Node != "" {
		s.marks[p.Node] = p.Seq
	}
	if s.after != nil {
		if err := s.after(call); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (s *fakeSink) FlushMark(_ context.Context, node string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marks[node], nil
}

func (s *fakeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rows)
}

// waitRows waits until the sink holds n rows.
func (s *fakeSink) waitRows(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for s.count() < n {
		select {
		case <-s.changed:
		case <-deadline:
			require.FailNow(t, "timed out", "%d of %d rows", s.count(), n)
		}
	}
}

// runFlusher runs f until the test ends.
func runFlusher(t *testing.T, f *Flusher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}

var fastBackoff = store.Backoff{Base: time.Millisecond, Factor: 2, Cap: 10 * time.Millisecond}

func appendEach(t *testing.T, buf store.Buffer, msgs []*store.Message) {
	t.Helper()
	for _, m := range msgs {
		require.NoError(t, buf.Append(context.Background(), []*store.Message{m}))
	}
}

func TestFlusherWatermark(t *testing.T) {
	buf := NewMemory(MemoryConfig{})
	sink := newFakeSink()
	f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", MinBatch: 10, InitialBatch: 50, MaxBatch: 50, Logger: discardLogger})
	runFlusher(t, f)

	msgs := newMessages(250)
	appendEach(t, buf, msgs)
	sink.waitRows(t, 250)
	// The flusher commits a batch, then counts it, once the sink's call has
	// returned.
	require.Eventually(t, func() bool { return f.Stats().Flushed == 250 }, 20*time.Second, time.Millisecond)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	require.Zero(t, sink.dups)
	var last uint64
	for _, c := range sink.calls {
		require.Equal(t, "n1", c.Node)
		require.Greater(t, c.Seq, last)
		last = c.Seq
	}
	require.Equal(t, last, sink.marks["n1"])
	require.Equal(t, 0, buf.Stats().Depth)
	require.Equal(t, int64(250), f.Stats().Flushed)
}

func TestFlusherRetriesFailures(t *testing.T) {
	buf := NewMemory(MemoryConfig{})
	sink := newFakeSink()
	boom := errors.New("database down")
	sink.before = func(call int) error {
		if call < 3 {
			return boom
		}
		return nil
	}
	var mu sync.Mutex
	var seen []store.FlushStats
	f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", Backoff: fastBackoff, Logger: discardLogger})
	msgs := newMessages(40)
	appendEach(t, buf, msgs)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- f.Run(ctx, func(s store.FlushStats) {
			mu.Lock()
			seen = append(seen, s)
			mu.Unlock()
		})
	}()
	sink.waitRows(t, 40)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	require.Zero(t, sink.dups)
	st := f.Stats()
	require.Equal(t, int64(3), st.Errors)
	require.Equal(t, int64(40), st.Flushed)
	require.Empty(t, st.LastError)
	mu.Lock()
	require.Contains(t, seen[0].LastError, "database down")
	mu.Unlock()
	// Every failed call carried the same records, from the start.
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, c := range sink.calls[:4] {
		require.Equal(t, ids(msgs), ids(c.Messages))
	}
}

func TestFlusherLostAnswerDuplicatesNothing(t *testing.T) {
	buf := openWAL(t, WALConfig{Dir: t.TempDir()})
	sink := newFakeSink()
	sink.after = func(call int) error {
		if call == 0 {
			return errors.New("connection reset after commit")
		}
		return nil
	}
	f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", Backoff: fastBackoff, InitialBatch: 100, MinBatch: 100, Logger: discardLogger})
	first := newMessages(30)
	appendEach(t, buf, first)
	runFlusher(t, f)
	sink.waitRows(t, 30)

	second := newMessages(20)
	appendEach(t, buf, second)
	sink.waitRows(t, 50)
	require.Eventually(t, func() bool { return buf.Stats().Depth == 0 }, 10*time.Second, time.Millisecond)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	require.Zero(t, sink.dups, "reconcile discarded what the failed call committed")
	for _, c := range sink.calls[1:] {
		for _, m := range c.Messages {
			require.NotContains(t, ids(first), m.ID)
		}
	}
}

func TestFlusherBatchShrinksWhenSlow(t *testing.T) {
	buf := NewMemory(MemoryConfig{})
	sink := newFakeSink()
	// A database slower than half the interval.
	sink.before = func(int) error { time.Sleep(15 * time.Millisecond); return nil }
	f := NewFlusher(buf, sink, FlusherConfig{
		Node: "n1", Interval: 20 * time.Millisecond,
		MinBatch: 25, InitialBatch: 200, MaxBatch: 400, Logger: discardLogger,
	})
	appendEach(t, buf, newMessages(600))
	runFlusher(t, f)
	sink.waitRows(t, 600)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	var sizes []int
	for _, c := range sink.calls {
		sizes = append(sizes, len(c.Messages))
	}
	require.Equal(t, []int{200, 100, 50, 25, 25}, sizes[:5])
	for _, n := range sizes {
		require.LessOrEqual(t, n, 200)
	}
	require.Equal(t, 25, f.Stats().BatchSize)
}

func TestFlusherBatchGrowsWhenFast(t *testing.T) {
	buf := NewMemory(MemoryConfig{})
	sink := newFakeSink()
	f := NewFlusher(buf, sink, FlusherConfig{
		Node: "n1", Interval: time.Hour,
		MinBatch: 10, InitialBatch: 10, MaxBatch: 80, Logger: discardLogger,
	})
	appendEach(t, buf, newMessages(500))
	runFlusher(t, f)
	sink.waitRows(t, 500)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	var sizes []int
	for _, c := range sink.calls {
		sizes = append(sizes, len(c.Messages))
	}
	require.Equal(t, []int{10, 20, 40, 80, 80}, sizes[:5])
	require.Equal(t, 80, f.Stats().BatchSize)
}

func TestFlusherDrain(t *testing.T) {
	buf := openWAL(t, WALConfig{Dir: t.TempDir()})
	sink := newFakeSink()
	sink.before = func(call int) error {
		if call == 1 {
			return errors.New("one failure")
		}
		return nil
	}
	f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", InitialBatch: 100, MinBatch: 100, Backoff: fastBackoff, Logger: discardLogger})
	require.NoError(t, buf.Append(context.Background(), newMessages(450)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, f.Drain(ctx))
	require.Equal(t, 0, buf.Stats().Depth)
	require.Equal(t, 450, sink.count())

	// Draining an empty buffer returns at once.
	require.NoError(t, f.Drain(ctx))
}

func TestFlusherOneRunAtATime(t *testing.T) {
	ctx := context.Background()
	buf := NewMemory(MemoryConfig{})
	sink := newFakeSink()
	f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", Logger: discardLogger})
	progressOf := func(ch chan string, name string) func(store.FlushStats) {
		return func(store.FlushStats) {
			select {
			case ch <- name:
			default:
			}
		}
	}
	flushed := make(chan string, 100)

	ctxA, cancelA := context.WithCancel(ctx)
	doneA := make(chan error)
	go func() { doneA <- f.Run(ctxA, progressOf(flushed, "A")) }()
	appendEach(t, buf, newMessages(1))
	require.Equal(t, "A", receive(t, flushed))

	doneB := make(chan error)
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	go func() { doneB <- f.Run(ctxB, progressOf(flushed, "B")) }()
	for range 5 {
		appendEach(t, buf, newMessages(1))
		require.Equal(t, "A", receive(t, flushed), "the second Run waits for the first")
	}

	cancelA()
	require.ErrorIs(t, <-doneA, context.Canceled)
	appendEach(t, buf, newMessages(1))
	require.Equal(t, "B", receive(t, flushed))
	cancelB()
	require.ErrorIs(t, <-doneB, context.Canceled)
}

func TestFlusherConfig(t *testing.T) {
	require.PanicsWithValue(t, "buffer: flusher config: field Node is required", func() {
		NewFlusher(NewMemory(MemoryConfig{}), newFakeSink(), FlusherConfig{})
	})
	require.Panics(t, func() {
		NewFlusher(NewMemory(MemoryConfig{}), newFakeSink(), FlusherConfig{Node: "n", MinBatch: 10, MaxBatch: 5})
	})
}

// dueIn returns n messages scheduled d from now.
func dueIn(n int, d time.Duration) []*store.Message {
	msgs := newMessages(n)
	for _, m := range msgs {
		m.ScheduledAt = time.Now().Add(d)
	}
	return msgs
}

func TestFlusherLinger(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Buffer{
		"memory": func(*testing.T) store.Buffer { return NewMemory(MemoryConfig{}) },
		"wal":    func(t *testing.T) store.Buffer { return openWAL(t, WALConfig{Dir: t.TempDir()}) },
	} {
		t.Run(name, func(t *testing.T) {
			// start runs a flusher with the given linger (an hour outlasts
			// the test unless something ends it), batch size and a
			// MinBatch of 10. It returns once the flusher waits for
			// records.
			start := func(t *testing.T, linger time.Duration, batch int) (store.Buffer, *fakeSink) {
				buf := open(t)
				sink := newFakeSink()
				f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", Interval: time.Hour, Linger: linger,
					MinBatch: 10, InitialBatch: batch, MaxBatch: batch, Logger: discardLogger})
				idle := make(chan struct{}, 1)
				f.idle = func() { poke(idle) }
				runFlusher(t, f)
				<-idle
				return buf, sink
			}
			calls := func(s *fakeSink) []int {
				s.mu.Lock()
				defer s.mu.Unlock()
				var sizes []int
				for _, c := range s.calls {
					sizes = append(sizes, len(c.Messages))
				}
				return sizes
			}

			t.Run("later messages share one flush", func(t *testing.T) {
				buf, sink := start(t, 300*time.Millisecond, 10)
				appendEach(t, buf, dueIn(3, time.Hour))
				sink.waitRows(t, 3)
				require.Equal(t, []int{3}, calls(sink), "one transaction for the three")
			})
			t.Run("a message due within 250 ms ends the wait", func(t *testing.T) {
				buf, sink := start(t, time.Hour, 10)
				appendEach(t, buf, dueIn(2, time.Hour))
				appendEach(t, buf, dueIn(1, 200*time.Millisecond))
				sink.waitRows(t, 3)
				require.Equal(t, []int{3}, calls(sink), "the due one takes the others along")
			})
			t.Run("a message rescheduled to now ends the wait", func(t *testing.T) {
				buf, sink := start(t, time.Hour, 10)
				msgs := dueIn(1, time.Hour)
				appendEach(t, buf, msgs)
				_, ok, err := buf.Update(context.Background(), msgs[0].ID, func(m *store.Message) { m.ScheduledAt = time.Now() })
				require.NoError(t, err)
				require.True(t, ok)
				sink.waitRows(t, 1)
			})
			t.Run("what arrives during a flush waits too", func(t *testing.T) {
				buf, sink := start(t, time.Hour, 10)
				late := dueIn(10, time.Hour)
				sink.before = func(call int) error {
					if call == 0 {
						appendEach(t, buf, late[:1])
					}
					return nil
				}
				appendEach(t, buf, dueIn(1, 100*time.Millisecond))
				sink.waitRows(t, 1)
				time.Sleep(50 * time.Millisecond) // room for a wrong flush of late[0] alone
				appendEach(t, buf, late[1:])
				sink.waitRows(t, 11)
				require.Equal(t, []int{1, 10}, calls(sink))
			})
			t.Run("after a flush of MinBatch or more, at once", func(t *testing.T) {
				buf, sink := start(t, time.Hour, 100)
				late := dueIn(5, time.Hour)
				sink.before = func(call int) error {
					if call == 0 {
						appendEach(t, buf, late)
					}
					return nil
				}
				appendEach(t, buf, dueIn(9, time.Hour))
				appendEach(t, buf, dueIn(1, 0)) // due: flushes the ten at once
				sink.waitRows(t, 15)
				require.Equal(t, []int{10, 5}, calls(sink))
			})
			t.Run("a batch's worth ends the wait", func(t *testing.T) {
				buf, sink := start(t, time.Hour, 10)
				appendEach(t, buf, dueIn(10, time.Hour))
				sink.waitRows(t, 10)
				require.Equal(t, []int{10}, calls(sink))
			})
			t.Run("no linger flushes at once", func(t *testing.T) {
				buf, sink := start(t, -1, 10)
				appendEach(t, buf, dueIn(1, time.Hour))
				sink.waitRows(t, 1)
			})
		})
	}
}

// A flush whose insert committed but whose answer was lost is committed in
// the buffer at once, not released: released, its records would be back in
// the buffer, where a Delete would win while the rows stayed in the
// database.
func TestFlushLostAnswerCommitsTheBatch(t *testing.T) {
	ctx := context.Background()
	buf := openWAL(t, WALConfig{Dir: t.TempDir()})
	sink := newFakeSink()
	sink.after = func(int) error { return errors.New("connection reset after commit") }
	f := NewFlusher(buf, sink, FlusherConfig{Node: "n1", Backoff: fastBackoff, Logger: discardLogger})
	msgs := newMessages(3)
	appendEach(t, buf, msgs)

	n, err := f.flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, 0, buf.Stats().Depth)
	deleted, err := buf.Delete(ctx, msgs[0].ID)
	require.NoError(t, err)
	require.False(t, deleted, "the message is the database's now, not the buffer's")

	// An insert that did not commit is released, for the next try.
	sink.before = func(int) error { return errors.New("connection refused") }
	more := newMessages(2)
	appendEach(t, buf, more)
	_, err = f.flush(ctx)
	require.Error(t, err)
	require.Equal(t, 2, buf.Stats().Depth)
	require.NotNil(t, buf.Next(10))
}
