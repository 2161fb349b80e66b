package faults

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// TestTemporalRestart stops the Temporal server under load for a while
// (5 s; 20 s in the full form) and starts it again: creates go on, messages
// due at once go on being delivered (the node flushes its buffer itself
// while Temporal is away), and delayed ones are delivered, on time or late
// but never early, once the scheduler runs again.
func TestTemporalRestart(t *testing.T) {
	outage := pick(5*time.Second, 20*time.Second)
	b := setup(t, bedOptions{ownTemporal: true})
	ledger := harness.NewLedger()
	l := startLoad(t, b.node, ledger, loadOptions{})
	for i := range pick(1, 2) {
		l.waitAccepted(300, time.Minute)
		require.NoError(t, b.tmp.Stop())
		stoppedAt := time.Now()
		deliveredAtStop := l.deliveredCount()
		var now, later []string
		ctx := context.Background()
		for time.Since(stoppedAt) < outage {
			r, id, _ := create(ctx, b.node, ledger, l.o.channel, 0, -3)
			require.Equal(t, http.StatusCreated, r.status, "create while Temporal is away: %s", r)
			now = append(now, id)
			r, id, _ = create(ctx, b.node, ledger, l.o.channel, time.Second, -4)
			require.Equal(t, http.StatusCreated, r.status, "create while Temporal is away: %s", r)
			later = append(later, id)
			pause(ctx, 100*time.Millisecond)
		}
		// Messages due at once were delivered during the outage.
		lastNow := l.waitDelivered(now, 30*time.Second)
		duringOutage := l.deliveredCount() - deliveredAtStop
		require.NoError(t, b.tmp.Start(ctx))
		back := time.Now()
		lastLater := l.waitDelivered(later, 2*time.Minute)
		t.Logf("outage %d of %s: %d messages delivered meanwhile; the %d due at once were all delivered %s after the stop; the %d delayed ones %s after Temporal was back",
			i+1, ms(outage), duringOutage, len(now), ms(lastNow.Sub(stoppedAt)), len(later), ms(lastLater.Sub(back)))
	}
	l.waitAccepted(300, time.Minute)
	l.drain(2 * time.Minute)
	t.Logf("load: %s", l.report())
	l.requireNoServerErrors()
	b.finish(t, ledger)
}
