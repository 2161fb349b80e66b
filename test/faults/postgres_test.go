package faults

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// probeChannel is a channel no message is ever sent to: a poll of it reads
// the database and leases nothing.
const probeChannel = "probe-empty"

// TestPostgresRestart restarts PostgreSQL (a fast shutdown, as pg_ctl
// restart -m fast) under load: the node goes on without a restart of its
// own and nothing accepted is lost.
func TestPostgresRestart(t *testing.T) {
	b := setup(t, bedOptions{ownPostgres: true})
	ledger := harness.NewLedger()
	l := startLoad(t, b.node, ledger, loadOptions{})
	for i := range pick(1, 3) {
		l.waitAccepted(300, time.Minute)
		start := time.Now()
		require.NoError(t, b.pg.Stop())
		require.NoError(t, b.pg.Start(context.Background()))
		down := time.Since(start)
		recovered := waitPollOK(t, b.node, time.Minute)
		t.Logf("restart %d: PostgreSQL down %s; the node's polls answered 200 again %s after it was back",
			i+1, ms(down), ms(recovered.Sub(start.Add(down))))
	}
	l.waitAccepted(300, time.Minute)
	l.drain(time.Minute)
	t.Logf("load: %s", l.report())
	l.requireNoServerErrors(http.StatusServiceUnavailable)
	b.finish(t, ledger)
}

// TestPostgresOutage stops PostgreSQL for a while (5 s; 30 s in the full
// form) under load: creates are still accepted into the WAL, polls answer
// 503 with Retry-After at once rather than hang, and the node recovers by
// itself when the database returns, flushing what it kept.
func TestPostgresOutage(t *testing.T) {
	outage := pick(5*time.Second, 30*time.Second)
	b := setup(t, bedOptions{ownPostgres: true})
	ledger := harness.NewLedger()
	l := startLoad(t, b.node, ledger, loadOptions{})
	l.waitAccepted(300, time.Minute)

	require.NoError(t, b.pg.Stop())
	stoppedAt := time.Now()
	var (
		keptIDs                   []string
		creates, refused          int
		polls, polls503           int
		slowestPoll, slowestReady time.Duration
		noRetryAfter              int
		readyz                    = map[int]int{}
	)
	ctx := context.Background()
	for time.Since(stoppedAt) < outage {
		r, id, _ := create(ctx, b.node, ledger, l.o.channel, 0, -2)
		creates++
		if id != "" {
			keptIDs = append(keptIDs, id)
		} else {
			refused++
			t.Logf("create during the outage: %s", r)
		}
		// A long poll must not wait out its 20 s while the database is
		// away: it answers 503 with Retry-After at once.
		p := call(ctx, b.node, "GET", "/v1/channels/"+probeChannel+"/poll?wait=20", nil)
		polls++
		slowestPoll = max(slowestPoll, p.took)
		if p.status == http.StatusServiceUnavailable {
			polls503++
			if p.header.Get("Retry-After") == "" {
				noRetryAfter++
			}
		} else if time.Since(stoppedAt) > time.Second {
			t.Errorf("poll during the outage: %s", p)
		}
		rz := call(ctx, b.node, "GET", "/readyz", nil)
		readyz[rz.status]++
		slowestReady = max(slowestReady, rz.took)
		pause(ctx, 200*time.Millisecond)
	}
	require.NoError(t, b.pg.Start(ctx))
	back := time.Now()
	recovered := waitPollOK(t, b.node, time.Minute)
	lastKept := l.waitDelivered(keptIDs, 2*time.Minute)

	t.Logf("outage %s: %d of %d probe creates accepted into the WAL; %d of %d long polls (wait=20) answered 503, slowest in %s, %d without Retry-After; /readyz %v (slowest %s)",
		ms(outage), creates-refused, creates, polls503, polls, ms(slowestPoll), noRetryAfter, readyz, ms(slowestReady))
	t.Logf("recovery: polls answered 200 %s after PostgreSQL was back; every message created during the outage was delivered %s after it was back",
		ms(recovered.Sub(back)), ms(lastKept.Sub(back)))
	require.Zero(t, refused, "creates must be kept in the WAL while the database is away")
	require.Zero(t, noRetryAfter, "a 503 must say when to retry")
	require.Less(t, slowestPoll, 5*time.Second, "a poll must not hang while the database is away")
	require.Greater(t, polls503, 0)

	l.waitAccepted(300, time.Minute)
	l.drain(2 * time.Minute)
	t.Logf("load: %s", l.report())
	l.requireNoServerErrors(http.StatusServiceUnavailable)
	b.finish(t, ledger)
}

// waitPollOK waits until a poll of the node answers 200 and returns when.
func waitPollOK(t *testing.T, node *harness.NodeProc, timeout time.Duration) time.Time {
	t.Helper()
	harness.WaitFor(t, timeout, 20*time.Millisecond, "a poll answered 200", func() (bool, error) {
		r := call(context.Background(), node, "GET", "/v1/channels/"+probeChannel+"/poll", nil)
		return r.status == http.StatusOK, r.err
	})
	return time.Now()
}
