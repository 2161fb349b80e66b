package buffer

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// TestSyncedFilesHoldEveryWrite holds the syncer to what it assumes of
// Badger (sync.go): after each append, every Badger log that holds the
// append's bytes was synced during it, and so was the directory when a
// log was created. The appends are small, big enough to roll the
// memtables over, and big enough for the value log, whose files are
// lowered to 1 MiB so that they roll over too.
func TestSyncedFilesHoldEveryWrite(t *testing.T) {
	defer func(size int64) { valueLogFileSize = size }(valueLogFileSize)
	valueLogFileSize = 1 << 20
	dir := t.TempDir()
	w := openWAL(t, WALConfig{Dir: dir})

	var mu sync.Mutex
	syncs := 0
	lastSync := map[string]int{} // file name (dir for the directory) → syncs when last synced
	w.syncer.sync = func(f *os.File) error {
		mu.Lock()
		syncs++
		name := filepath.Base(f.Name())
		if f.Name() == dir {
			name = "dir"
		}
		lastSync[name] = syncs
		mu.Unlock()
		return fdatasync(f)
	}
	logs := func() map[string][]byte {
		files := map[string][]byte{}
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), memExt) || strings.HasSuffix(e.Name(), vlogExt) {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err == nil { // a memtable flushed meanwhile is deleted
					files[e.Name()] = b
				}
			}
		}
		return files
	}

	sizes := map[string]int{"small": 100, "memtable": 300 << 10, "vlog": 600 << 10}
	plan := strings.Fields(strings.Repeat("small memtable ", 30) + strings.Repeat("vlog small ", 6))
	memRolls, vlogRolls := 0, 0
	for i, kind := range plan {
		marker := []byte(uuid.NewString())
		m := newMessage(i)
		m.Payload = append(append([]byte(`"`), marker...), bytes.Repeat([]byte("x"), sizes[kind])...)
		m.Payload = append(m.Payload, '"')

		before := logs()
		mu.Lock()
		start := syncs
		mu.Unlock()
		require.NoError(t, w.Append(context.Background(), []*store.Message{m}))
		after := logs()

		mu.Lock()
		holders := 0
		for name, b := range after {
			if bytes.Contains(b, marker) {
				holders++
				require.Greater(t, lastSync[name], start, "append %d (%s): %s holds it and was not synced", i, kind, name)
			}
			if _, old := before[name]; !old {
				require.Greater(t, lastSync["dir"], start, "append %d (%s): %s is new and the directory was not synced", i, kind, name)
				if strings.HasSuffix(name, memExt) {
					memRolls++
				} else {
					vlogRolls++
				}
			}
		}
		mu.Unlock()
		require.Positive(t, holders, "append %d (%s): no memtable or value log holds it", i, kind)
	}
	require.Positive(t, memRolls, "no memtable rolled over")
	require.Positive(t, vlogRolls, "no value log rolled over")
	t.Logf("%d appends, %d new memtables, %d new value logs", len(plan), memRolls, vlogRolls)
}

// vlogFiles lists the value logs in dir.
func vlogFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), vlogExt) {
			files[e.Name()] = true
		}
	}
	return files
}

// TestValueLogGCSyncsBeforeItDeletes: a pass of Badger's value-log GC
// rewrites the live values of a file and deletes the file. The rewrite
// must be synced while the file is still there, or a crash in between
// loses the live values.
func TestValueLogGCSyncsBeforeItDeletes(t *testing.T) {
	defer func(size int64) { valueLogFileSize = size }(valueLogFileSize)
	valueLogFileSize = 1 << 20
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir(), GCInterval: time.Hour}
	w := openWAL(t, cfg)

	// Values over 512 KiB go to the value log, two to a file; all but the
	// last are flushed and trimmed. The last one's file is more than half
	// garbage too: its other value is the larger.
	var msgs []*store.Message
	for i := range 8 {
		size := map[int]int{6: 800 << 10, 7: 530 << 10}[i]
		m := newMessage(i)
		m.Payload = []byte(`"` + strings.Repeat(string(rune('a'+i)), cmp.Or(size, 600<<10)) + `"`)
		require.NoError(t, w.Append(ctx, []*store.Message{m}))
		msgs = append(msgs, m)
	}
	b := w.Next(7)
	require.Len(t, b.Messages, 7)
	require.NoError(t, w.Commit(ctx, b))
	// Appends of 300 KiB carry the trim and roll memtables over, 60 MB
	// of them enough tables for Badger to compact the trimmed keys away,
	// which tells it which values are garbage.
	for i := range 200 {
		m := newMessage(100 + i)
		m.Payload = []byte(`"` + strings.Repeat("s", 300<<10) + `"`)
		require.NoError(t, w.Append(ctx, []*store.Message{m}))
	}

	var atSync map[string]bool
	sync := w.syncer.sync
	w.syncer.sync = func(f *os.File) error {
		if f.Name() == cfg.Dir {
			atSync = vlogFiles(t, cfg.Dir)
		}
		return sync(f)
	}
	before := vlogFiles(t, cfg.Dir)
	live := "" // the value log that holds the live value
	for name := range before {
		b, err := os.ReadFile(filepath.Join(cfg.Dir, name))
		require.NoError(t, err)
		if bytes.Contains(b, msgs[7].Payload) {
			live = name
		}
	}
	require.NotEmpty(t, live)
	// Badger learns what is garbage as it compacts, in the background:
	// passes are tried until one has moved the live value.
	rewrote := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && before[live]; {
		atSync = nil
		err := w.rewriteValueLog()
		if errors.Is(err, badger.ErrNoRewrite) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		require.NoError(t, err)
		rewrote++
		after := vlogFiles(t, cfg.Dir)
		deleted := 0
		for name := range before {
			if !after[name] {
				deleted++
				require.True(t, atSync[name], "%s was deleted before the logs were synced", name)
			}
		}
		require.Positive(t, deleted, "the pass deleted no value log")
		before = vlogFiles(t, cfg.Dir)
	}
	require.Positive(t, rewrote, "no pass of the GC rewrote a file")
	require.False(t, vlogFiles(t, cfg.Dir)[live], "the GC did not move the live value out of %s", live)
	t.Logf("%d passes rewrote a file", rewrote)

	w = reopen(t, w, cfg)
	got, ok := w.Get(msgs[7].ID)
	require.True(t, ok, "the live value is lost")
	require.Equal(t, msgs[7].Payload, got.Payload)
}
