package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// TestGracefulShutdown is issue 6's graceful stop: a SIGTERM while long
// polls and creates are in flight lets them finish, flushes the buffer
// (memory mode, so nothing but the flush saves a message) and deregisters
// the node, which disappears from the health of another node.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const region = "shutdown"
	db := harness.Database(t)
	tmp := harness.SharedTemporal(t)
	a := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: region, NodeID: "shutdown-a", Buffer: "memory"})
	b := harness.Node(t, harness.NodeOptions{DatabaseURL: db, TemporalAddr: tmp.Addr(), Region: region, NodeID: "shutdown-b"})
	registered := func() (map[string]bool, error) {
		h, err := health(ctx, b.Client())
		if err != nil {
			return nil, err
		}
		ids := map[string]bool{}
		for _, n := range *h.Nodes {
			ids[n.NodeId] = true
		}
		return ids, nil
	}
	harness.WaitFor(t, 30*time.Second, 50*time.Millisecond, "both nodes registered", func() (bool, error) {
		ids, err := registered()
		return ids[a.ID()] && ids[b.ID()], err
	})

	ledger := harness.NewLedger()
	prod := startProducers(a, ledger, "shutdown", 8)
	// Long polls on an empty channel, in flight when the SIGTERM comes.
	const polls = 4
	var wg sync.WaitGroup
	pollErrs := make([]error, polls)
	pollTook := make([]time.Duration, polls)
	pollStart := time.Now()
	for i := range polls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, pollErrs[i] = poll(ctx, a.Client(), "idle", pollOpts{wait: 3})
			pollTook[i] = time.Since(pollStart)
		}()
	}
	harness.WaitFor(t, 20*time.Second, 10*time.Millisecond, "creates to flow", func() (bool, error) {
		return ledger.Accepted() >= 1000, nil
	})
	require.Less(t, time.Since(pollStart), 3*time.Second, "the long polls must still be in flight at the SIGTERM")

	sigterm := time.Now()
	err := a.Stop()
	stopTook := time.Since(sigterm)
	prod.halt()
	wg.Wait()
	require.NoError(t, err, "the node exits with status 0")
	for i := range polls {
		require.NoError(t, pollErrs[i], "long poll %d in flight at the SIGTERM", i)
	}
	t.Logf("stopped %s after the SIGTERM; long polls in flight ended %s after they began; %d creates accepted, %d refused once the node stopped listening",
		stopTook.Round(time.Millisecond), pollTook[0].Round(time.Millisecond), ledger.Accepted(), prod.failed.Load())

	// The stopped node deregistered before it exited; the other node's
	// health lists it no more once its cached node list (a second old at
	// most) is read again.
	var rows int
	require.NoError(t, harness.Pool(t, db).QueryRow(ctx, `SELECT count(*) FROM nodes WHERE id = $1`, a.ID()).Scan(&rows))
	require.Zero(t, rows, "the stopped node is still registered")
	harness.WaitFor(t, 5*time.Second, 50*time.Millisecond, "the other node to list the stopped one no more", func() (bool, error) {
		ids, err := registered()
		return !ids[a.ID()] && ids[b.ID()], err
	})

	s := ledger.Check(t, db)
	require.Empty(t, s.Lost, "a graceful stop in memory mode loses nothing")
}
