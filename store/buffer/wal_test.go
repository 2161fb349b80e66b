package buffer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// reopen closes w and opens its directory again.
func reopen(t *testing.T, w *WAL, cfg WALConfig) *WAL {
	t.Helper()
	require.NoError(t, w.Close())
	return openWAL(t, cfg)
}

func TestWALReopenReplays(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	msgs := newMessages(10)
	for _, m := range msgs {
		require.NoError(t, w.Append(ctx, []*store.Message{m}))
	}
	b := w.Next(3)
	require.NoError(t, w.Commit(ctx, b))
	deleted, err := w.Delete(ctx, msgs[4].ID)
	require.NoError(t, err)
	require.True(t, deleted)
	updated, _, err := w.Update(ctx, msgs[5].ID, func(m *store.Message) {
		m.Payload = []byte(`"changed"`)
		m.ScheduledAt = epoch.Add(24 * time.Hour)
	})
	require.NoError(t, err)
	// A batch in flight at the crash (or close) comes back too.
	require.NotNil(t, w.Next(2))

	w = reopen(t, w, cfg)
	for _, m := range msgs[:3] {
		_, ok := w.Get(m.ID)
		require.False(t, ok, "a committed record does not come back")
	}
	_, ok := w.Get(msgs[4].ID)
	require.False(t, ok, "a deletion survives reopen")
	got, ok := w.Get(msgs[5].ID)
	require.True(t, ok)
	require.Equal(t, updated, got, "an update survives reopen")

	live := append(append([]*store.Message{}, msgs[3]), msgs[5:]...)
	require.Equal(t, len(live), w.Stats().Depth)
	b2 := w.Next(100)
	require.Equal(t, ids(live), ids(b2.Messages), "replay keeps append order")
	require.Greater(t, b2.Seq, b.Seq)
	for i, m := range live {
		if m.ID != msgs[5].ID {
			require.Equal(t, m, b2.Messages[i])
		}
	}
}

func TestWALSeqNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	require.NoError(t, w.Append(ctx, newMessages(3)))
	b := w.Next(10)
	require.NoError(t, w.Commit(ctx, b))

	// Emptied: the trimmed watermark keeps seqs above b.Seq.
	w = reopen(t, w, cfg)
	require.NoError(t, w.Append(ctx, newMessages(1)))
	b2 := w.Next(10)
	require.Greater(t, b2.Seq, b.Seq)
	w.Release(b2)

	// A database mark ahead of the clock (another directory of this node,
	// or a clock set back) is persisted by Discard and respected on open.
	ahead := uint64(time.Now().Add(time.Hour).UnixNano())
	require.NoError(t, w.Discard(ctx, ahead))
	require.Equal(t, 0, w.Stats().Depth)
	w = reopen(t, w, cfg)
	require.NoError(t, w.Append(ctx, newMessages(1)))
	b3 := w.Next(10)
	require.Greater(t, b3.Seq, ahead)
}

// entryValue encodes msgs as an append entry whose first seq is first;
// for a part, begin and end are its append's first and last seq.
func entryValue(first uint64, kind byte, begin, end uint64, msgs ...*store.Message) []byte {
	recs := newRecords(msgs)
	h := entryHeader{kind: kind, count: len(recs), begin: begin, end: end}
	return append(appendEntryHeader(nil, first, h), encodeRecords(recs)[entryHeaderMax:]...)
}

// badgerUpdate runs fn on the closed WAL in dir, as a crash could have
// left it.
func badgerUpdate(t *testing.T, dir string, fn func(txn *badger.Txn) error) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func TestWALDropsCutShortAppend(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	kept := newMessages(2)
	require.NoError(t, w.Append(ctx, kept))
	b := w.Next(10)
	w.Release(b)
	require.NoError(t, w.Close())

	// The first part of an append of 10 records split over several entries
	// is what a crash leaves of one never acknowledged.
	orphan := newMessage(9)
	first := b.Seq + 1
	badgerUpdate(t, cfg.Dir, func(txn *badger.Txn) error {
		return txn.Set(seqKey(appendPrefix, first), entryValue(first, entryPart, first, first+9, orphan))
	})

	w = openWAL(t, cfg)
	_, ok := w.Get(orphan.ID)
	require.False(t, ok)
	require.Equal(t, 2, w.Stats().Depth)
	// The seqs of the append cut short are never handed out again.
	require.NoError(t, w.Append(ctx, newMessages(1)))
	b = w.Next(10)
	require.Greater(t, b.Seq, first+9)
}

func TestWALLargeAppendSpansEntries(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	// 2,000 records of 900 bytes, about 1.9 MB, are split in parts of at
	// most entryMaxBytes of whole records.
	msgs := newMessages(2000)
	for _, m := range msgs {
		m.Payload = []byte(`"` + strings.Repeat("x", 898) + `"`)
	}
	size := int64(len(encodeRecords(newRecords(msgs))) - entryHeaderMax)
	before := w.Entries.Load()
	require.NoError(t, w.Append(ctx, msgs))
	parts := w.Entries.Load() - before
	require.GreaterOrEqual(t, parts, (size+entryMaxBytes-1)/entryMaxBytes)
	require.LessOrEqual(t, parts, size/entryMaxBytes+1)
	require.NoError(t, w.Append(ctx, newMessages(1)))

	w = reopen(t, w, cfg)
	require.Equal(t, 2001, w.Stats().Depth)
	b := w.Next(10_000)
	require.Equal(t, ids(msgs), ids(b.Messages[:2000]))
}

func TestWALLargeAppendSpansTransactions(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	// One record per entry of under 1 KiB: entries stay in the LSM tree
	// (under the value threshold), and 2,000 of them far exceed one
	// transaction of a 4 MB memtable.
	w.entryMax = 512
	msgs := newMessages(2000)
	for _, m := range msgs {
		m.Payload = []byte(`"` + strings.Repeat("x", 798) + `"`)
	}
	before := w.Commits.Load()
	require.NoError(t, w.Append(ctx, msgs))
	require.Greater(t, w.Commits.Load()-before, int64(1), "the append needed several transactions")
	require.NoError(t, w.Append(ctx, newMessages(1)))

	w = reopen(t, w, cfg)
	require.Equal(t, 2001, w.Stats().Depth)
	b := w.Next(10_000)
	require.Equal(t, ids(msgs), ids(b.Messages[:2000]))
}

func TestWALGroupCommit(t *testing.T) {
	ctx := context.Background()
	w := openWAL(t, WALConfig{Dir: t.TempDir()})
	const goroutines, appends = 64, 20
	before := w.Commits.Load()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range appends {
				if err := w.Append(ctx, newMessages(1)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	commits := w.Commits.Load() - before
	t.Logf("%d appends in %d commits", goroutines*appends, commits)
	require.Less(t, commits, int64(goroutines*appends/4), "concurrent appends share commits")
	require.Equal(t, goroutines*appends, w.Stats().Depth)
}

func TestWALConfig(t *testing.T) {
	_, err := OpenWAL(WALConfig{})
	require.ErrorContains(t, err, "Dir")
	_, err = OpenWAL(WALConfig{Dir: t.TempDir(), MaxDepth: -1})
	require.ErrorContains(t, err, "MaxDepth")
}

func TestWALClosed(t *testing.T) {
	w, err := OpenWAL(WALConfig{Dir: t.TempDir(), Logger: discardLogger})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Append(context.Background(), newMessages(1)), ErrClosed)
	require.Equal(t, 0, w.Stats().Depth)
}

func TestWALErrorDiskFull(t *testing.T) {
	require.ErrorIs(t, walError(fmt.Errorf("sync: %w", syscall.ENOSPC)), store.ErrStorageFull)
	// Badger flattens the errors it wraps into text.
	flat := errors.New("while writing to vlog err: write /wal/000001.vlog: no space left on device")
	require.ErrorIs(t, walError(flat), store.ErrStorageFull)
	require.NotErrorIs(t, walError(errors.New("boom")), store.ErrStorageFull)
}

// TestWALCrash kills a process that appends, deletes, updates and flushes
// in a loop, and checks that the WAL holds every append it acknowledged,
// unless it was deleted or handed to the database, with its latest
// acknowledged update, and none it acknowledged as deleted.
func TestWALCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: it starts a child process and kill -9s it; make test runs it without -short")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "SMQ_WAL_CRASH_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var (
		appended []uuid.UUID
		deleting = map[uuid.UUID]bool{} // a Delete started: it may be durable
		deleted  = map[uuid.UUID]bool{}
		flushed  = map[uuid.UUID]bool{}
		updated  = map[uuid.UUID]int{}
	)
	r := bufio.NewReader(out)
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// Only whole lines were acknowledged.
			require.ErrorIs(t, err, io.EOF)
			break
		}
		var (
			op      string
			idText  string
			attempt int
		)
		if n, _ := fmt.Sscan(line, &op, &idText, &attempt); n < 2 {
			continue // the test framework's own output
		}
		id, perr := uuid.Parse(idText)
		if perr != nil {
			continue
		}
		switch op {
		case "a":
			appended = append(appended, id)
		case "D":
			deleting[id] = true
		case "d":
			deleted[id] = true
		case "f":
			flushed[id] = true
		case "u":
			updated[id] = attempt
		}
		if len(appended) == 2000 && !killed {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	require.Error(t, cmd.Wait())
	require.True(t, killed, "the child stopped before it was killed")

	w := openWAL(t, WALConfig{Dir: dir})
	for _, id := range appended {
		m, ok := w.Get(id)
		switch {
		case deleted[id]:
			require.False(t, ok, "deleted %s is back", id)
		case !ok:
			// A batch the database has may or may not come back: its trim
			// needs no fsync. A Delete cut short by the kill may have
			// happened.
			require.True(t, flushed[id] || deleting[id], "acknowledged %s is lost", id)
		case updated[id] > 0:
			require.GreaterOrEqual(t, m.Attempts, updated[id], "the update of %s is lost", id)
		}
	}
	t.Logf("%d appended, %d deleted, %d updated, %d flushed; %d in the WAL after the kill",
		len(appended), len(deleted), len(updated), len(flushed), w.Stats().Depth)
}

// printSink is a database that prints the id of every message it is given
// (before the flusher's Commit) and keeps nothing.
type printSink struct {
	print func(format string, args ...any)
}

func (s printSink) MessageInsertMany(_ context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	for _, m := range p.Messages {
		s.print("f %s\n", m.ID)
	}
	return &store.MessageInsertManyResult{Inserted: len(p.Messages)}, nil
}

func (printSink) FlushMark(context.Context, string) (uint64, error) { return 0, nil }

// TestHelperProcess is TestWALCrash's child: until it is killed, it appends
// one to three messages at a time, deletes or updates some of them, and
// flushes, printing every acknowledged change.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("SMQ_WAL_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestWALCrash")
	}
	w, err := OpenWAL(WALConfig{Dir: dir, Logger: discardLogger})
	require.NoError(t, err)
	var mu sync.Mutex // one line per write
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format, args...)
	}
	check := func(what string, err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, what+":", err)
			os.Exit(3)
		}
	}
	ctx := context.Background()
	ids := make(chan uuid.UUID, 1000)
	for g := range 8 {
		go func() {
			for i := 0; ; i++ {
				msgs := newMessages(1 + (g+i)%3)
				check("append", w.Append(ctx, msgs))
				for _, m := range msgs {
					say("a %s\n", m.ID)
					select {
					case ids <- m.ID:
					default:
					}
				}
			}
		}()
	}
	go func() {
		for attempt := 1; ; attempt++ {
			id := <-ids
			if attempt%3 == 0 {
				// Said before the Delete: a kill between its fsync and the
				// "d" line leaves a deletion the parent never heard of.
				say("D %s\n", id)
				ok, err := w.Delete(ctx, id)
				check("delete", err)
				if ok {
					say("d %s\n", id)
				}
				continue
			}
			_, ok, err := w.Update(ctx, id, func(m *store.Message) { m.Attempts = attempt })
			check("update", err)
			if ok {
				say("u %s %d\n", id, attempt)
			}
		}
	}()
	f := NewFlusher(w, printSink{say}, FlusherConfig{Node: "crash", Interval: 5 * time.Millisecond, Logger: discardLogger})
	go func() { check("flush", f.Run(ctx, nil)) }()
	// The parent kills us; if it died instead, do not run forever.
	time.Sleep(2 * time.Minute)
	os.Exit(4)
}
