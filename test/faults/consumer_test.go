package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// TestVanishedConsumer has a consumer take leases and vanish: each message
// comes back after its visibility timeout and is delivered to another
// consumer, whose ack counts; the vanished one's receipts no longer work.
func TestVanishedConsumer(t *testing.T) {
	const visibility = 2 * time.Second
	n := pick(10, 50)
	b := setup(t, bedOptions{})
	ledger := harness.NewLedger()
	ctx := context.Background()
	ids := map[string]bool{}
	for i := range n {
		r, id, _ := create(ctx, b.node, ledger, "vanish", 0, i)
		require.Equal(t, http.StatusCreated, r.status, "%s", r)
		ids[id] = true
	}

	// Consumer A leases everything and is never heard from again.
	var stale []polled
	harness.WaitFor(t, 30*time.Second, 10*time.Millisecond, "consumer A's leases", func() (bool, error) {
		ms, err := poll(ctx, b.node, "vanish", n, visibility)
		stale = append(stale, ms...)
		return len(stale) == n, err
	})
	leasedAt := time.Now()

	// Consumer B gets each one back after the lease expired.
	var back []polled
	var first, last time.Duration
	harness.WaitFor(t, 60*time.Second, 10*time.Millisecond, "consumer B's deliveries", func() (bool, error) {
		ms, err := poll(ctx, b.node, "vanish", n, 30*time.Second)
		if len(ms) > 0 {
			if len(back) == 0 {
				first = time.Since(leasedAt)
			}
			last = time.Since(leasedAt)
		}
		back = append(back, ms...)
		return len(back) == n, err
	})
	received := time.Now()
	require.GreaterOrEqual(t, first, visibility, "a lease must hold for its visibility timeout")
	for _, m := range back {
		require.True(t, ids[m.ID], "an unknown message %s", m.ID)
		require.Equal(t, 2, m.Attempts, "the second delivery of %s", m.ID)
	}

	// A's receipts are stale now; B's acks succeed.
	r := call(ctx, b.node, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{stale[0].Receipt}})
	require.Equal(t, http.StatusConflict, r.status, "%s", r)
	receipts := make([]string, len(back))
	for i, m := range back {
		receipts[i] = m.Receipt
	}
	r = call(ctx, b.node, "POST", "/v1/messages/ack", map[string]any{"receipts": receipts})
	require.Equal(t, http.StatusOK, r.status, "%s", r)
	for _, m := range back {
		ledger.Deliver(m.ID, harness.Delivery{ReceivedAt: received, AcquiredAt: m.AcquiredAt, Node: b.node.ID()})
	}
	t.Logf("%d messages leased for %s by a consumer that vanished: back to another consumer %s to %s after the lease was taken",
		n, visibility, ms(first), ms(last))
	b.finish(t, ledger)
}

// poll leases up to max messages of channel for visibility.
func poll(ctx context.Context, node *harness.NodeProc, channel string, max int, visibility time.Duration) ([]polled, error) {
	r := call(ctx, node, "GET", fmt.Sprintf("/v1/channels/%s/poll?max=%d&wait=1&visibility_timeout=%d",
		channel, max, int(visibility.Seconds())), nil)
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("poll: %s", r)
	}
	var out struct {
		Messages []polled `json:"messages"`
	}
	return out.Messages, json.Unmarshal(r.body, &out)
}
