package buffer

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// A sync that fails after Badger committed the write leaves its outcome
// unknown: the write is in Badger and may come back on replay. The WAL
// answers that write, and every later one, store.ErrBufferFailed, says so
// in its stats, and after a reopen replay settles what the log holds.
func TestWALBreaksOnAFailedSync(t *testing.T) {
	ctx := context.Background()
	cfg := WALConfig{Dir: t.TempDir()}
	w := openWAL(t, cfg)
	kept := newMessages(1)
	require.NoError(t, w.Append(ctx, kept))

	sync := w.syncer.sync
	w.syncer.sync = func(*os.File) error { return errors.New("input/output error (injected)") }
	err := w.Append(ctx, newMessages(1))
	require.ErrorIs(t, err, store.ErrBufferFailed)
	require.Contains(t, w.Stats().Failed, "input/output error (injected)")

	// The disk is fine again; the WAL still refuses, as a retried fsync
	// after a failure proves nothing.
	w.syncer.sync = sync
	require.ErrorIs(t, w.Append(ctx, newMessages(1)), store.ErrBufferFailed)
	_, err = w.Delete(ctx, kept[0].ID)
	require.ErrorIs(t, err, store.ErrBufferFailed)
	_, ok := w.Get(kept[0].ID)
	require.True(t, ok)

	w = reopen(t, w, cfg)
	require.Empty(t, w.Stats().Failed)
	_, ok = w.Get(kept[0].ID)
	require.True(t, ok, "what was acknowledged is replayed")
	require.NoError(t, w.Append(ctx, newMessages(1)))
}
