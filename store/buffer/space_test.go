package buffer

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// A WAL on a real, small filesystem is filled with appends until it
// refuses them, then left to Badger's background work: the memtables'
// flush to level 0 and its compaction write through mmap'd files too, and
// the reserve must leave them room, or the process dies of SIGBUS (as it
// did with a reserve of 1 MiB on a 14 MiB filesystem).
func TestWALFullDiskLeavesBadgerRoom(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a size-capped tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs on %s (%v: %s)", dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })

	ctx := context.Background()
	w := openWAL(t, WALConfig{Dir: dir, MaxDepth: 1 << 30, MaxBytes: 1 << 40})
	full := false
	for i := 0; i < 10000 && !full; i++ {
		msgs := newMessages(40)
		for _, m := range msgs {
			m.Payload = make([]byte, 10<<10)
			_, _ = rand.Read(m.Payload)
		}
		err := w.Append(ctx, msgs)
		full = errors.Is(err, store.ErrStorageFull)
		require.True(t, err == nil || full, "append %d: %v", i, err)
	}
	require.True(t, full, "the filesystem never filled")
	// Badger flushes the full memtables and compacts level 0 meanwhile.
	time.Sleep(3 * time.Second)
	free, err := statfsFree(dir)
	require.NoError(t, err)
	t.Logf("refused at the reserve; %d MiB free after Badger's background work", free>>20)
}
