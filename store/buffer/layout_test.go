package buffer

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// walKeys lists the keys of the closed WAL in dir, an append entry as
// "a<seq>", an override as "d<seq>" or "u<seq>".
func walKeys(t *testing.T, dir string) []string {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	var keys []string
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) == 9 {
				keys = append(keys, fmt.Sprintf("%c%d", k[0], binary.BigEndian.Uint64(k[1:])))
			} else {
				keys = append(keys, string(k))
			}
		}
		return nil
	}))
	return keys
}

func seqName(prefix byte, seq uint64) string { return fmt.Sprintf("%c%d", prefix, seq) }

// TestWALEntriesPerAppend pins what makes the WAL cheap: an Append is one
// Badger entry however many messages it has, concurrent Appends share
// entries, and a trim writes the watermark and one delete per entry, not
// per message.
func TestWALEntriesPerAppend(t *testing.T) {
	ctx := context.Background()
	w := openWAL(t, WALConfig{Dir: t.TempDir()})
	w.trimIdle = time.Hour // trims wait for the next append

	e0 := w.Entries.Load()
	require.NoError(t, w.Append(ctx, newMessages(1)))
	require.Equal(t, int64(1), w.Entries.Load()-e0, "a single create is one entry")
	require.Positive(t, w.Stats().WALSyncTime, "the stats count the time of a sync")
	e0 = w.Entries.Load()
	require.NoError(t, w.Append(ctx, newMessages(1000)))
	require.Equal(t, int64(1), w.Entries.Load()-e0, "a batch create of 1,000 is one entry")

	e0, c0 := w.Entries.Load(), w.Commits.Load()
	const goroutines, appends = 64, 10
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
	entries, commits := w.Entries.Load()-e0, w.Commits.Load()-c0
	t.Logf("%d concurrent appends in %d entries, %d commits", goroutines*appends, entries, commits)
	require.Equal(t, commits, entries, "a group commit's appends share one entry")
	require.Equal(t, w.Commits.Load(), w.Stats().WALSyncs, "the stats count every commit as a sync")

	appendEntries := w.Entries.Load()
	b := w.Next(10_000)
	require.Len(t, b.Messages, 1+1000+goroutines*appends)
	require.NoError(t, w.Commit(ctx, b))
	require.Equal(t, appendEntries, w.Entries.Load(), "a trim is not written on its own")
	require.NoError(t, w.Append(ctx, newMessages(1)))
	require.Equal(t, appendEntries+1+1, w.Entries.Load()-appendEntries,
		"the next append writes itself, the watermark and one delete per entry trimmed")
}

func TestWALReplayOverrides(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	msgs := newMessages(6)
	require.NoError(t, w.Append(ctx, msgs))
	b := w.Next(10)
	seqOf5 := b.Seq
	w.Release(b)

	deleted, err := w.Delete(ctx, msgs[1].ID)
	require.NoError(t, err)
	require.True(t, deleted)
	want := map[int]*store.Message{0: msgs[0], 5: msgs[5]}
	want[2], _, err = w.Update(ctx, msgs[2].ID, func(m *store.Message) { m.Payload = []byte(`"two"`) })
	require.NoError(t, err)
	_, _, err = w.Update(ctx, msgs[3].ID, func(m *store.Message) { m.Attempts = 1 })
	require.NoError(t, err)
	want[3], _, err = w.Update(ctx, msgs[3].ID, func(m *store.Message) { m.Attempts = 2; m.LastError = "again" })
	require.NoError(t, err)
	_, _, err = w.Update(ctx, msgs[4].ID, func(m *store.Message) { m.Attempts = 9 })
	require.NoError(t, err)
	_, err = w.Delete(ctx, msgs[4].ID)
	require.NoError(t, err)

	check := func(w *WAL) {
		t.Helper()
		var bytes int64
		for i, m := range msgs {
			got, ok := w.Get(m.ID)
			if want[i] == nil {
				require.False(t, ok, "message %d was deleted", i)
				continue
			}
			require.True(t, ok, "message %d", i)
			require.Equal(t, want[i], got, "message %d", i)
			bytes += int64(len(want[i].Payload))
		}
		st := w.Stats()
		require.Equal(t, len(want), st.Depth)
		require.Equal(t, bytes, st.Bytes)
		b := w.Next(10)
		require.Equal(t, ids([]*store.Message{msgs[0], msgs[2], msgs[3], msgs[5]}), ids(b.Messages))
		require.Equal(t, seqOf5, b.Seq, "records keep their seqs")
		w.Release(b)
	}
	w = reopen(t, w, cfg)
	check(w)

	// Overrides written after a replay replay too.
	want[5], _, err = w.Update(ctx, msgs[5].ID, func(m *store.Message) { m.Region = "us" })
	require.NoError(t, err)
	delete(want, 0)
	_, err = w.Delete(ctx, msgs[0].ID)
	require.NoError(t, err)
	w = reopen(t, w, cfg)
	b = w.Next(10)
	require.Equal(t, ids([]*store.Message{msgs[2], msgs[3], msgs[5]}), ids(b.Messages))
	require.Equal(t, want[5], b.Messages[2])

	// Once flushed, nothing is left of the records or their overrides.
	require.NoError(t, w.Commit(ctx, b))
	require.NoError(t, w.Close())
	require.Equal(t, []string{"mtrimmed"}, walKeys(t, cfg.Dir))
}

// TestWALReplayPartlyTrimmedAppend flushes the first records of an append:
// the entry stays for the others, and only they replay.
func TestWALReplayPartlyTrimmedAppend(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	msgs := newMessages(10)
	require.NoError(t, w.Append(ctx, msgs))
	b := w.Next(4)
	require.NoError(t, w.Commit(ctx, b))
	first := b.Seq - 3

	w = reopen(t, w, cfg)
	require.Equal(t, 6, w.Stats().Depth)
	b = w.Next(100)
	require.Equal(t, msgs[4:], b.Messages)
	require.Equal(t, first+9, b.Seq)
	w.Release(b)
	require.NoError(t, w.Close())
	require.Equal(t, []string{seqName(appendPrefix, first), "mtrimmed"}, walKeys(t, cfg.Dir))

	// The watermark is what counts: a trim that a crash lost (the entry is
	// whole, the watermark below it) brings the flushed records back, for
	// the flusher's reconcile to discard.
	badgerUpdate(t, cfg.Dir, func(txn *badger.Txn) error { return txn.Delete(trimmedKey) })
	w = openWAL(t, cfg)
	require.Equal(t, 10, w.Stats().Depth)
	require.NoError(t, w.Discard(ctx, first+3))
	b = w.Next(100)
	require.Equal(t, msgs[4:], b.Messages)
	w.Release(b)
}

// TestWALSplitAppend writes an append as several part entries and checks
// that it replays only whole: every part there, or the missing ones below
// the watermark.
func TestWALSplitAppend(t *testing.T) {
	ctx := context.Background()
	// setup writes an append of 10 records in parts of 2, then one of 2
	// records, and closes the WAL; it returns the first seq of the split
	// append.
	setup := func(t *testing.T) (WALConfig, []*store.Message, []*store.Message, uint64) {
		cfg := WALConfig{Dir: t.TempDir()}
		w := openWAL(t, cfg)
		split, after := newMessages(10), newMessages(2)
		one := len(encodeRecords(newRecords(split[:1]))) - entryHeaderMax
		w.entryMax = 2*one + 1
		e0 := w.Entries.Load()
		require.NoError(t, w.Append(ctx, split))
		require.Equal(t, int64(5), w.Entries.Load()-e0)
		require.NoError(t, w.Append(ctx, after))
		b := w.Next(100)
		w.Release(b)
		require.NoError(t, w.Close())
		first := b.Seq - 11
		parts := []string{}
		for i := range uint64(5) {
			parts = append(parts, seqName(appendPrefix, first+2*i))
		}
		require.Equal(t, append(parts, seqName(appendPrefix, first+10)), walKeys(t, cfg.Dir))
		return cfg, split, after, first
	}

	t.Run("Whole", func(t *testing.T) {
		cfg, split, after, _ := setup(t)
		w := openWAL(t, cfg)
		b := w.Next(100)
		require.Equal(t, append(append([]*store.Message{}, split...), after...), b.Messages)
	})

	for name, part := range map[string]uint64{"LastPartLost": 4, "MiddlePartLost": 2, "FirstPartLost": 0} {
		t.Run(name, func(t *testing.T) {
			cfg, split, after, first := setup(t)
			badgerUpdate(t, cfg.Dir, func(txn *badger.Txn) error {
				return txn.Delete(seqKey(appendPrefix, first+2*part))
			})
			w := openWAL(t, cfg)
			for _, m := range split {
				_, ok := w.Get(m.ID)
				require.False(t, ok, "a record of an append cut short replayed")
			}
			b := w.Next(100)
			require.Equal(t, after, b.Messages)
			w.Release(b)
			require.NoError(t, w.Close())
			require.Equal(t, []string{seqName(appendPrefix, first+10)}, walKeys(t, cfg.Dir), "the remains are dropped")
		})
	}

	t.Run("PartlyFlushed", func(t *testing.T) {
		cfg, split, after, first := setup(t)
		w := openWAL(t, cfg)
		b := w.Next(5)
		require.NoError(t, w.Commit(ctx, b))
		w = reopen(t, w, cfg)
		b = w.Next(100)
		require.Equal(t, append(append([]*store.Message{}, split[5:]...), after...), b.Messages)
		w.Release(b)
		require.NoError(t, w.Close())
		// The parts wholly flushed are deleted, the others kept.
		require.Equal(t, []string{
			seqName(appendPrefix, first+4), seqName(appendPrefix, first+6), seqName(appendPrefix, first+8),
			seqName(appendPrefix, first+10), "mtrimmed",
		}, walKeys(t, cfg.Dir))

		// Parts below the watermark may be gone: the rest is still whole.
		w = openWAL(t, cfg)
		b = w.Next(100)
		require.Equal(t, append(append([]*store.Message{}, split[5:]...), after...), b.Messages)
	})

	t.Run("DeleteAndUpdate", func(t *testing.T) {
		cfg, split, _, _ := setup(t)
		w := openWAL(t, cfg)
		_, err := w.Delete(ctx, split[3].ID)
		require.NoError(t, err)
		updated, _, err := w.Update(ctx, split[8].ID, func(m *store.Message) { m.Payload = []byte(`"eight"`) })
		require.NoError(t, err)
		w = reopen(t, w, cfg)
		_, ok := w.Get(split[3].ID)
		require.False(t, ok)
		got, ok := w.Get(split[8].ID)
		require.True(t, ok)
		require.Equal(t, updated, got)
		require.Equal(t, 11, w.Stats().Depth)
	})
}

func TestWALRefusesUnknownKeys(t *testing.T) {
	for name, kv := range map[string][2][]byte{
		// A record of the layout before append entries.
		"old record": {append([]byte{'r'}, make([]byte, 8)...), encodeRecord(nil, newMessage(0))},
		"old head":   {[]byte("mhead"), make([]byte, 8)},
		"version":    {seqKey(appendPrefix, 1), append([]byte{9}, entryValue(1, entryWhole, 1, 1, newMessage(0))[1:]...)},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			badgerUpdate(t, dir, func(txn *badger.Txn) error { return txn.Set(kv[0], kv[1]) })
			_, err := OpenWAL(WALConfig{Dir: dir, Logger: discardLogger})
			require.Error(t, err)
			t.Log(err)
			if name == "version" {
				require.ErrorIs(t, err, errCorrupt)
			} else {
				require.ErrorContains(t, err, "unknown key")
			}
		})
	}
}

func TestWALTrimWrittenWhenIdle(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	w.trimIdle = 10 * time.Millisecond
	require.NoError(t, w.Append(ctx, newMessages(3)))
	c0 := w.Commits.Load()
	require.NoError(t, w.Commit(ctx, w.Next(10)))
	deadline := time.Now().Add(10 * time.Second)
	for w.Commits.Load() == c0 {
		require.True(t, time.Now().Before(deadline), "the trim was never written")
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, w.Close())
	require.Equal(t, []string{"mtrimmed"}, walKeys(t, cfg.Dir))
}

// fakeDisk is a filesystem whose free space the test sets.
type fakeDisk struct {
	free  atomic.Int64
	looks atomic.Int64
}

func (d *fakeDisk) freeSpace(string) (int64, error) {
	d.looks.Add(1)
	return d.free.Load(), nil
}

func TestWALSpaceCheck(t *testing.T) {
	ctx := context.Background()
	w := openWAL(t, WALConfig{Dir: t.TempDir()})
	var disk fakeDisk
	w.freeSpace = disk.freeSpace

	// Little room: every write looks afresh, and sees the disk filled by
	// another hand.
	disk.free.Store(spaceReserve + 64<<20)
	for range 5 {
		require.NoError(t, w.Append(ctx, newMessages(1)))
	}
	require.Equal(t, int64(5), disk.looks.Load())
	disk.free.Store(spaceReserve)
	full := newMessages(1)
	require.ErrorIs(t, w.Append(ctx, full), store.ErrStorageFull)
	_, ok := w.Get(full[0].ID)
	require.False(t, ok)
	require.Equal(t, 5, w.Stats().Depth)
	disk.free.Store(spaceReserve + 64<<20)
	require.NoError(t, w.Append(ctx, full))

	// Plenty of room: the writer trusts a recent look (for
	// spaceCheckEvery, so not always: each write would have to take that
	// long).
	disk.free.Store(100 << 30)
	looks := disk.looks.Load()
	for range 20 {
		require.NoError(t, w.Append(ctx, newMessages(1)))
	}
	require.Less(t, disk.looks.Load()-looks, int64(20))
}
