package faults

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// TestClock checks the two ends of the schedule: a message scheduled in
// the past is delivered at once, and messages scheduled 30 days ahead
// survive restarts of every component with their schedule intact, and are
// not delivered.
func TestClock(t *testing.T) {
	b := setup(t, bedOptions{ownPostgres: true, ownTemporal: true})
	ledger := harness.NewLedger()
	ctx := context.Background()

	// The past means now.
	for _, at := range []any{1000, "2001-01-01T00:00:00Z", time.Now().Add(-time.Hour).Unix()} {
		sent := time.Now()
		r := call(ctx, b.node, "POST", "/v1/message", map[string]any{"channel": "past", "payload": 1, "scheduled_at": at})
		require.Equal(t, http.StatusCreated, r.status, "%s", r)
		var c created
		require.NoError(t, json.Unmarshal(r.body, &c))
		require.WithinDuration(t, sent, c.ScheduledAt, 5*time.Second, "a past scheduled_at %v means now", at)
		ledger.Accept(c.MessageID, c.ScheduledAt)
		var got []polled
		harness.WaitFor(t, 30*time.Second, 10*time.Millisecond, "the past message", func() (bool, error) {
			ms, err := poll(ctx, b.node, "past", 1, 30*time.Second)
			got = ms
			return len(ms) == 1, err
		})
		received := time.Now()
		require.Equal(t, c.MessageID, got[0].ID)
		r = call(ctx, b.node, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{got[0].Receipt}})
		require.Equal(t, http.StatusOK, r.status, "%s", r)
		ledger.Deliver(got[0].ID, harness.Delivery{ReceivedAt: received, AcquiredAt: got[0].AcquiredAt, Node: b.node.ID()})
		t.Logf("scheduled_at %v: delivered %s after the create", at, ms(received.Sub(sent)))
	}

	// 30 days ahead, in both forms, through the buffer and committed.
	future := map[string]time.Time{}
	in30 := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	for _, body := range []map[string]any{
		{"channel": "future", "payload": 1, "scheduled_at": in30.Unix()},
		{"channel": "future", "payload": 2, "scheduled_at": in30.Format(time.RFC3339)},
		{"channel": "future", "payload": 3, "delay": "720h"},
		{"channel": "future", "payload": 4, "delay": 30 * 24 * 3600, "max_attempts": 1},
	} {
		for _, path := range []string{"/v1/message", "/v1/message?durability=committed"} {
			r := call(ctx, b.node, "POST", path, body)
			require.Equal(t, http.StatusCreated, r.status, "%s", r)
			var c created
			require.NoError(t, json.Unmarshal(r.body, &c))
			ledger.Accept(c.MessageID, c.ScheduledAt)
			future[c.MessageID] = c.ScheduledAt
		}
	}
	check := func(after string) {
		t.Helper()
		for id, at := range future {
			r := call(ctx, b.node, "GET", "/v1/message/"+id, nil)
			require.Equal(t, http.StatusOK, r.status, "after %s: %s", after, r)
			var m struct {
				Status      string    `json:"status"`
				ScheduledAt time.Time `json:"scheduled_at"`
			}
			require.NoError(t, json.Unmarshal(r.body, &m))
			require.Equal(t, "PENDING", m.Status, "after %s", after)
			require.True(t, at.Equal(m.ScheduledAt), "after %s: %s scheduled %s, was %s", after, id, m.ScheduledAt, at)
		}
		ms, err := poll(ctx, b.node, "future", 100, 30*time.Second)
		require.NoError(t, err)
		require.Empty(t, ms, "after %s: a message 30 days ahead was delivered", after)
	}
	check("the creates")

	start := time.Now()
	b.node.Kill()
	b.node.Restart(t)
	check("kill -9 of the node")
	require.NoError(t, b.pg.Stop())
	require.NoError(t, b.pg.Start(ctx))
	waitPollOK(t, b.node, time.Minute)
	check("a restart of PostgreSQL")
	require.NoError(t, b.tmp.Stop())
	require.NoError(t, b.tmp.Start(ctx))
	check("a restart of Temporal")
	b.node.Restart(t)
	check("a graceful restart of the node")
	t.Logf("%d messages 30 days ahead kept their schedules through restarts of the node (kill -9 and graceful), PostgreSQL and Temporal (%s)",
		len(future), since(start))

	s := b.finish(t, ledger)
	require.Equal(t, len(future), s.Waiting, "every future message still waits with its schedule")
}
