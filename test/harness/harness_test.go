package harness_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api/client"
	"github.com/smq/smq/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// TestHarness starts every part, restarts each, and checks a message's way
// through a node that was killed in between.
func TestHarness(t *testing.T) {
	ctx := context.Background()
	pg := harness.Postgres(t)
	db := pg.NewDatabase(t)
	tmp := harness.Temporal(t)
	node := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: "eu"})
	ledger := harness.NewLedger()

	r, err := node.Client().CreateMessageWithResponse(ctx, nil, client.MessageIn{Channel: "h", Payload: map[string]any{"n": 1}})
	require.NoError(t, err)
	require.NoError(t, client.Check(r.HTTPResponse, r.Body))
	ledger.AcceptCreated(*r.JSON201)
	require.NotZero(t, node.PID())

	node.Kill()
	require.False(t, node.Running())
	node.Restart(t)

	tmp.Kill()
	require.NoError(t, tmp.Start(ctx))

	require.NoError(t, pg.Stop())
	require.NoError(t, pg.Start(ctx))

	var got []client.PolledMessage
	harness.WaitFor(t, 30*time.Second, 50*time.Millisecond, "the message", func() (bool, error) {
		wait := int64(1)
		p, err := node.Client().PollMessagesWithResponse(ctx, "h", &client.PollMessagesParams{Wait: &wait})
		if err != nil {
			return false, err
		}
		if err := client.Check(p.HTTPResponse, p.Body); err != nil {
			return false, err
		}
		got = *p.JSON200.Messages
		return len(got) > 0, nil
	})
	ledger.DeliverPolled(got, time.Now(), node.ID())
	a, err := node.Client().AckMessagesWithResponse(ctx, client.LeaseBody{Receipts: &[]string{got[0].Receipt}})
	require.NoError(t, err)
	require.NoError(t, client.Check(a.HTTPResponse, a.Body))
	require.NoError(t, node.Stop())
	s := ledger.Check(t, db)
	require.Equal(t, 1, s.Delivered)
}
