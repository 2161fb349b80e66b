package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api/client"
	"github.com/smq/smq/test/harness"
)

// TestRegions is issue 5's end-to-end test on PostgreSQL: two nodes, in
// regions eu and us, share one database and one Temporal. Polling takes
// local messages first and fills from the other region when asked or when
// the local region has none; each region's scheduler promotes only its own
// rows; when every us node is gone for the takeover grace, eu delivers us
// messages; and us, back, resumes its own without a double delivery.
func TestRegions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		heartbeat = 500 * time.Millisecond
		stale     = 2 * time.Second
		grace     = 5 * time.Second
	)
	env := []string{"SMQ_HEARTBEAT_INTERVAL=" + heartbeat.String(), "SMQ_STALE_AFTER=" + stale.String(), "SMQ_TAKEOVER_GRACE=" + grace.String()}
	db := harness.Database(t)
	pool := harness.Pool(t, db)
	tmp := harness.SharedTemporal(t)
	eu := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: "eu", NodeID: "eu-1", Env: env})
	us := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: "us", NodeID: "us-1", Env: env})
	ledger := harness.NewLedger()

	// send creates n messages due at due on node, durably in the database
	// when it answers, and returns their ids.
	send := func(node *harness.NodeProc, channel string, n int, due time.Time) []string {
		var ids []string
		for range n {
			m, err := create(ctx, node.Client(), channel, due, committed())
			require.NoError(t, err)
			ledger.AcceptCreated(m)
			ids = append(ids, m.MessageId.String())
		}
		return ids
	}
	ready := func(ids ...[]string) {
		all := slices.Concat(ids...)
		harness.WaitFor(t, 30*time.Second, 50*time.Millisecond, "messages to be ready", func() (bool, error) {
			rows := dbRows(t, pool, all)
			for _, id := range all {
				if rows[id][0] != "READY" {
					return false, nil
				}
			}
			return true, nil
		})
	}
	// take polls node once and acks what it got, returning the ids.
	take := func(node *harness.NodeProc, channel string, o pollOpts) []string {
		ms, err := poll(ctx, node.Client(), channel, o)
		require.NoError(t, err)
		received := time.Now()
		_, err = ack(ctx, node.Client(), ms)
		require.NoError(t, err)
		ledger.DeliverPolled(ms, received, node.ID())
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.Id.String())
		}
		return ids
	}
	sorted := func(ids []string) []string { return slices.Sorted(slices.Values(ids)) }

	// Each region's rows carry its region, and its own scheduler makes them
	// ready.
	euIDs := send(eu, "rg", 3, time.Time{})
	usIDs := send(us, "rg", 5, time.Time{})
	ready(euIDs, usIDs)
	rows := dbRows(t, pool, slices.Concat(euIDs, usIDs))
	for _, id := range euIDs {
		require.Equal(t, "eu", rows[id][1])
	}
	for _, id := range usIDs {
		require.Equal(t, "us", rows[id][1])
	}

	// Local first: eu has 3 of its own, so a poll of 10 gets only those.
	require.Equal(t, sorted(euIDs), sorted(take(eu, "rg", pollOpts{max: 10})))
	// With nothing local left, eu fills from us.
	got := take(eu, "rg", pollOpts{max: 2})
	require.Len(t, got, 2)
	require.Subset(t, usIDs, got)
	// subsidize=true fills the rest of max from us even while eu has some.
	euMore := send(eu, "rg", 2, time.Time{})
	ready(euMore)
	got = take(eu, "rg", pollOpts{max: 10, subsidize: true})
	require.Len(t, got, 5, "2 of eu and the 3 left of us")
	require.Subset(t, got, euMore)
	require.Empty(t, take(us, "rg", pollOpts{max: 10, subsidize: true}))

	// Region-scoped scheduling, then takeover: us messages due in 1.5 s,
	// then us's only node dies. eu's scheduler passes their due time
	// (it delivers an eu message due at the same time) without touching
	// them; after the grace, eu's janitor takes them over.
	due := time.Now().Add(1500 * time.Millisecond)
	orphans := send(us, "rg2", 10, due)
	euTwin := send(eu, "rg2", 1, due)
	us.Kill()
	killedAt := time.Now()
	var delivered []string
	deliveredAt := map[string]time.Duration{}
	consume := func(want int, within time.Duration) {
		deadline := time.Now().Add(within)
		for len(delivered) < want && time.Now().Before(deadline) {
			for _, id := range take(eu, "rg2", pollOpts{max: 100, wait: 1}) {
				delivered = append(delivered, id)
				deliveredAt[id] = time.Since(killedAt)
			}
		}
	}
	consume(1, 10*time.Second)
	require.Equal(t, euTwin, delivered, "eu's own message, due with the us ones, comes first")
	// Look 1.5 s past their due time, and 1.5 s before the grace can end
	// (it runs from us's last heartbeat, at most one interval before the
	// kill): the wait is the window watched, not a wait for an event.
	<-time.After(time.Until(due.Add(1500 * time.Millisecond)))
	checked := time.Since(killedAt)
	require.Less(t, checked, grace-heartbeat, "the test ran too slowly to watch the window before the takeover")
	for id, r := range dbRows(t, pool, orphans) {
		require.Equal(t, "PENDING", r[0], "%s: us's message promoted %s after the kill, before the takeover grace", id, checked)
		require.Equal(t, "us", r[1])
	}
	t.Logf("%s after the kill, %s past their due time, us's messages were still PENDING: eu's scheduler leaves them alone",
		checked.Round(time.Millisecond), time.Since(due).Round(time.Millisecond))
	consume(11, 30*time.Second)
	require.Len(t, delivered, 11, "us's messages were not taken over within 30 s of the kill")
	var first, last time.Duration
	for _, id := range orphans {
		d := deliveredAt[id]
		require.Contains(t, deliveredAt, id)
		// The grace runs from the last heartbeat, at most one interval
		// before the kill.
		require.GreaterOrEqual(t, d, grace-heartbeat, "%s taken over %s after the kill, before the grace", id, d)
		if first == 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	t.Logf("us's messages (due %s after the kill) delivered by eu %s to %s after the kill (grace %s, stale after %s)",
		due.Sub(killedAt).Round(time.Millisecond), first.Round(time.Millisecond), last.Round(time.Millisecond), grace, stale)

	// us comes back: it runs its own region again, and nothing comes twice.
	us.Restart(t)
	back := send(us, "rg3", 3, time.Now().Add(time.Second))
	var mine []string
	deadline := time.Now().Add(30 * time.Second)
	for len(mine) < len(back) && time.Now().Before(deadline) {
		mine = append(mine, take(us, "rg3", pollOpts{max: 10, wait: 2})...)
	}
	require.Equal(t, sorted(back), sorted(mine), "us, back, delivers its own messages")
	require.Empty(t, take(us, "rg2", pollOpts{max: 100, subsidize: true}), "a taken-over message came again")
	require.Empty(t, take(eu, "rg2", pollOpts{max: 100, subsidize: true}), "a taken-over message came again")
	h, err := health(ctx, eu.Client())
	require.NoError(t, err)
	for _, n := range *h.Nodes {
		if n.NodeId == us.ID() {
			require.Equal(t, client.Active, n.Status, "us is active again")
		}
	}
	ledger.Check(t, db)
}
