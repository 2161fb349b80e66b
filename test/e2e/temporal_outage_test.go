package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api/client"
	"github.com/smq/smq/test/harness"
	"github.com/smq/smq/workflows"
)

// TestTemporalUnreachable is issue 4's outage: with Temporal down, creates,
// polls of ready messages, acks and nacks go on, and /v1/health says the
// scheduler is degraded and Temporal down; when Temporal comes back, the
// loops resume by themselves and a message due after the restart is
// delivered.
func TestTemporalUnreachable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.Database(t)
	tmp := harness.Temporal(t)
	node := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: "outage", NodeID: "outage-1"})
	c := node.Client()
	ledger := harness.NewLedger()

	// Three messages made ready while Temporal runs.
	var ready []string
	for range 3 {
		m := mustCreate(t, c, "out", time.Time{})
		ledger.AcceptCreated(m)
		ready = append(ready, m.MessageId.String())
	}
	harness.WaitFor(t, 30*time.Second, 50*time.Millisecond, "the messages to be ready", func() (bool, error) {
		for _, id := range ready {
			m, found, err := getMessage(ctx, c, id)
			if err != nil || !found || m.Status != client.MessageOutStatusREADY {
				return false, err
			}
		}
		return true, nil
	})

	tmp.Kill()
	downAt := time.Now()
	harness.WaitFor(t, 30*time.Second, 100*time.Millisecond, "health to see Temporal down", func() (bool, error) {
		h, err := health(ctx, c)
		if err != nil {
			return false, err
		}
		l := h.Node.Layers
		return l.Temporal.Status == client.LayerStatusDown && l.Scheduler.Status == client.LayerStatusDegraded, nil
	})
	h, err := health(ctx, c)
	require.NoError(t, err)
	t.Logf("%s after the kill: node %s; temporal %s (%s); scheduler %s (%s); janitor %s", time.Since(downAt).Round(time.Millisecond),
		h.Node.Status, h.Node.Layers.Temporal.Status, deref(h.Node.Layers.Temporal.Reason),
		h.Node.Layers.Scheduler.Status, deref(h.Node.Layers.Scheduler.Reason), h.Node.Layers.Janitor.Status)
	require.Equal(t, client.LayerStatusHealthy, h.Node.Layers.Producer.Status)
	require.Equal(t, client.LayerStatusHealthy, h.Node.Layers.Consumer.Status)
	require.Equal(t, client.LayerStatusHealthy, h.Node.Layers.Database.Status)

	// Creates go on, and reach the database (the node flushes its buffer
	// itself while Temporal is away).
	var created []string
	for range 5 {
		m := mustCreate(t, c, "out-later", time.Now().Add(time.Hour))
		ledger.AcceptCreated(m)
		created = append(created, m.MessageId.String())
	}
	pool := harness.Pool(t, db)
	harness.WaitFor(t, 30*time.Second, 50*time.Millisecond, "creates to reach the database without Temporal", func() (bool, error) {
		return len(dbRows(t, pool, created)) == len(created), nil
	})

	// Polls of ready messages, an ack and a nack go on.
	got, err := poll(ctx, c, "out", pollOpts{max: 10})
	require.NoError(t, err)
	require.Len(t, got, 3)
	received := time.Now()
	n, err := ack(ctx, c, got[:2])
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	ledger.DeliverPolled(got[:2], received, node.ID())
	reason := "consumer failed"
	nr, err := c.NackMessagesWithResponse(ctx, client.NackInputBody{Receipts: &[]string{got[2].Receipt}, Reason: &reason})
	require.NoError(t, err)
	require.NoError(t, client.Check(nr.HTTPResponse, nr.Body))
	require.EqualValues(t, 1, nr.JSON200.Count)
	m, found, err := getMessage(ctx, c, got[2].Id.String())
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, client.MessageOutStatusPENDING, m.Status)
	require.EqualValues(t, 1, m.Attempts)

	// The outage outlasts the activities' heartbeat timeout, so that
	// Temporal, back, times out the runs it lost touch with and the loops
	// must really start again, not merely reconnect. This wait is the
	// fault's length, not a wait for something to happen.
	<-time.After(time.Until(downAt.Add(workflows.HeartbeatTimeout + time.Second)))

	// A message due 1 s after Temporal's restart is delivered, once the
	// loops resumed on their own; so is the nacked one, due again after
	// its backoff (1 s).
	require.NoError(t, tmp.Start(ctx))
	upAt := time.Now()
	due := upAt.Add(time.Second)
	late := mustCreate(t, c, "out", due)
	ledger.AcceptCreated(late)
	want := map[string]bool{late.MessageId.String(): true, got[2].Id.String(): true}
	deadline := time.Now().Add(60 * time.Second)
	for len(want) > 0 && time.Now().Before(deadline) {
		ms, err := poll(ctx, c, "out", pollOpts{max: 10, wait: 5})
		require.NoError(t, err)
		received := time.Now()
		for _, pm := range ms {
			require.True(t, want[pm.Id.String()], "unexpected delivery of %s", pm.Id)
			delete(want, pm.Id.String())
			if pm.Id == late.MessageId {
				t.Logf("the message due 1 s after Temporal's restart came %s after its time", received.Sub(due).Round(time.Millisecond))
			}
		}
		_, err = ack(ctx, c, ms)
		require.NoError(t, err)
		// The nacked message's first, unacked delivery is not in the
		// ledger: only this one, which was acked.
		ledger.DeliverPolled(ms, received, node.ID())
	}
	require.Empty(t, want, "not delivered within a minute of Temporal's restart")
	// Polls lease due messages themselves, so the deliveries above need no
	// scheduler and can end before the loops are back: their restart waits
	// for Temporal to time out the runs it lost (the heartbeat timeout) and
	// retry them, which on a loaded machine took over 30 s.
	harness.WaitFor(t, 90*time.Second, 100*time.Millisecond, "health to see Temporal back", func() (bool, error) {
		h, err := health(ctx, c)
		if err != nil {
			return false, err
		}
		l := h.Node.Layers
		return l.Temporal.Status == client.LayerStatusHealthy && l.Scheduler.Status == client.LayerStatusHealthy &&
			deref(l.Scheduler.Reason) == "running on this node" && deref(l.Janitor.Reason) == "running on this node", nil
	})
	t.Logf("healthy again %s after Temporal's restart", time.Since(upAt).Round(time.Millisecond))
	ledger.Check(t, db)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
