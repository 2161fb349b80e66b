package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/smq/smq/api/client"
	"github.com/smq/smq/test/harness"
	"github.com/smq/smq/workflows"
)

// TestDeliveryOnTime is issue 4's end-to-end test: a node with Temporal
// takes a message due in 2 s; a long-polling consumer receives it on time
// and acks it; the scheduler, janitor and flush workflows run under their
// stable ids and answer their stats query.
func TestDeliveryOnTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const region = "delivery"
	db := harness.Database(t)
	tmp := harness.SharedTemporal(t)
	node := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: region, NodeID: "delivery-1"})
	c := node.Client()
	ledger := harness.NewLedger()

	// The workflows come up in the background after the node is ready; a
	// message sent before its scheduler runs would test the start-up, not
	// the delivery.
	tc := tmp.Client(t)
	for _, id := range []string{workflows.SchedulerID(region), workflows.JanitorID(region), workflows.FlushID(region, node.ID())} {
		harness.WaitFor(t, 30*time.Second, 100*time.Millisecond, "workflow "+id, func() (bool, error) {
			d, err := tc.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				return false, err
			}
			return d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
		})
	}
	harness.WaitFor(t, 30*time.Second, 100*time.Millisecond, "the scheduler running on the node", func() (bool, error) {
		h, err := health(ctx, c)
		if err != nil {
			return false, err
		}
		return h.Node.Layers.Scheduler.Reason != nil && *h.Node.Layers.Scheduler.Reason == "running on this node", nil
	})

	due := time.Now().Add(2 * time.Second)
	m := mustCreate(t, c, "on-time", due)
	ledger.AcceptCreated(m)
	require.WithinDuration(t, due, m.ScheduledAt, time.Millisecond)

	// Long polls of at most 5 s until the message comes.
	var got []client.PolledMessage
	var received time.Time
	deadline := time.Now().Add(15 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		ms, err := poll(ctx, c, "on-time", pollOpts{max: 10, wait: 5})
		require.NoError(t, err)
		got, received = ms, time.Now()
	}
	require.Len(t, got, 1, "the message did not come within 15 s")
	late := received.Sub(m.ScheduledAt)
	t.Logf("received %s after its scheduled_at (leased %s after)", late.Round(time.Millisecond), got[0].AcquiredAt.Sub(m.ScheduledAt).Round(time.Millisecond))
	require.GreaterOrEqual(t, got[0].AcquiredAt, m.ScheduledAt.Add(-time.Millisecond), "delivered early")
	// Generous for a loaded CI machine, yet below any polling tick a
	// scheduler without wake-ups would get away with.
	require.Less(t, late, 500*time.Millisecond, "delivered late")

	n, err := ack(ctx, c, got)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	ledger.DeliverPolled(got, received, node.ID())
	_, found, err := getMessage(ctx, c, m.MessageId.String())
	require.NoError(t, err)
	require.False(t, found, "an acked message is gone")

	// Each workflow answers its stats query with its region (and node).
	for _, id := range []string{workflows.SchedulerID(region), workflows.JanitorID(region), workflows.FlushID(region, node.ID())} {
		v, err := tc.QueryWorkflow(ctx, id, "", workflows.StatsQuery)
		require.NoError(t, err, id)
		var st workflows.Stats
		require.NoError(t, v.Get(&st), id)
		require.Equal(t, region, st.Region, id)
		require.False(t, st.Since.IsZero(), id)
		t.Logf("%s stats: runs %d, promoted %d, flushed %d, errors %d", id, st.Runs, st.Promoted, st.Flushed, st.Errors)
	}
	ledger.Check(t, db)
}
