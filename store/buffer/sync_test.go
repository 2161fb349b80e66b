package buffer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
