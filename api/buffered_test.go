package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/buffer"
)

// flush moves everything buffered into the database, as the flusher does.
func (b *pgBundle) flush(t *testing.T, buf store.Buffer) {
	t.Helper()
	for batch := buf.Next(1000); batch != nil; batch = buf.Next(1000) {
		_, err := b.st.MessageInsertMany(t.Context(), &store.MessageInsertManyParams{Messages: batch.Messages, Node: "n1", Seq: batch.Seq, Seqs: batch.Seqs})
		require.NoError(t, err)
		require.NoError(t, buf.Commit(t.Context(), batch))
	}
}

// TestBuffered checks a message's life while it is still in the node's
// buffer: visible, reschedulable and deletable before the flush, and what
// the flush writes is the latest version.
func TestBuffered(t *testing.T) {
	buf := buffer.NewMemory(buffer.MemoryConfig{})
	t.Cleanup(func() { _ = buf.Close() })
	b := setupPG(t, api.Deps{Buffer: buf})

	kept := b.create(t, `{"channel":"c","payload":"v1","delay":"1h"}`)
	gone := b.create(t, `{"channel":"c","payload":"doomed"}`)
	m := b.get(t, kept)
	require.True(t, m.Buffered)
	require.Equal(t, "PENDING", m.Status)

	r := b.do(t, keyProduce, "PATCH", "/v1/message/"+kept.String(), `{"payload":"v2","delay":0}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.JSONEq(t, `"v2"`, string(b.get(t, kept).Payload))

	require.Equal(t, http.StatusOK, b.do(t, keyProduce, "DELETE", "/v1/message/"+gone.String(), nil).Status)
	requireProblem(t, b.do(t, keyProduce, "GET", "/v1/message/"+gone.String(), nil), 404)

	b.flush(t, buf)
	m = b.get(t, kept)
	require.False(t, m.Buffered)
	require.JSONEq(t, `"v2"`, string(m.Payload), "the flush wrote the rescheduled version")
	got := b.eventually(t, "c")
	require.Equal(t, kept, got.ID)
	require.Empty(t, b.poll(t, "c", ""), "the deleted message was never flushed")

	// Committed and dedup creates bypass the buffer.
	id := b.create(t, `{"channel":"c","payload":1}`, "Idempotency-Key", "k1")
	require.False(t, b.get(t, id).Buffered)
	id = b.create(t, `{"channel":"c","payload":1}`)
	require.True(t, b.get(t, id).Buffered)
	r = b.do(t, keyProduce, "POST", "/v1/message?durability=committed", `{"channel":"c","payload":1}`)
	require.Equal(t, http.StatusCreated, r.Status)
	var out api.CreatedMessage
	r.Decode(t, &out)
	require.False(t, b.get(t, out.MessageID).Buffered)
}

// TestBufferedReplayed covers a crash between a flush's commit and the
// buffer's: the database and the buffer both hold the message. A PATCH
// changes both and a DELETE removes both.
func TestBufferedReplayed(t *testing.T) {
	buf := buffer.NewMemory(buffer.MemoryConfig{})
	t.Cleanup(func() { _ = buf.Close() })
	b := setupPG(t, api.Deps{Buffer: buf})

	patched := b.create(t, `{"channel":"c","payload":"v1","delay":"1h"}`)
	deleted := b.create(t, `{"channel":"c","payload":"v1","delay":"1h"}`)
	// Copy the buffer into the database without committing the batch.
	batch := buf.Next(1000)
	require.Len(t, batch.Messages, 2)
	_, err := b.st.MessageInsertMany(t.Context(), &store.MessageInsertManyParams{Messages: batch.Messages})
	require.NoError(t, err)
	buf.Release(batch)

	r := b.do(t, keyProduce, "PATCH", "/v1/message/"+patched.String(), `{"payload":"v2"}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, http.StatusOK, b.do(t, keyProduce, "DELETE", "/v1/message/"+deleted.String(), nil).Status)

	inDB, err := b.st.MessageGet(t.Context(), patched)
	require.NoError(t, err)
	require.JSONEq(t, `"v2"`, string(inDB.Payload), "the database copy was patched too")
	_, err = b.st.MessageGet(t.Context(), deleted)
	require.ErrorIs(t, err, store.ErrNotFound, "the database copy was deleted too")
	_, ok := buf.Get(deleted)
	require.False(t, ok)
}
