package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// TestMetrics checks the node's Prometheus metrics an operator alerts on:
// acks, nacks and dead-lettered messages by channel, the
// buffer's gauges and the HTTP request durations by operation.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	node := harness.Node(t, harness.NodeOptions{DatabaseURL: harness.Database(t), Region: "metrics", NodeID: "metrics-1"})

	body := `{"channel":"billing","payload":{"n":1},"max_attempts":1}`
	resp, err := http.Post(node.URL()+"/v1/message?durability=committed", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	got, err := poll(ctx, node.Client(), "billing", pollOpts{max: 10, wait: 5})
	require.NoError(t, err)
	require.Len(t, got, 1)
	nack, _ := json.Marshal(map[string]any{"receipts": []string{got[0].Receipt}, "reason": "card declined"})
	resp, err = http.Post(node.URL()+"/v1/messages/nack", "application/json", bytes.NewReader(nack))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	dead, err := poll(ctx, node.Client(), "billing.DLQ", pollOpts{max: 10, wait: 5})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	ack, _ := json.Marshal(map[string]any{"receipts": []string{dead[0].Receipt}})
	resp, err = http.Post(node.URL()+"/v1/messages/ack", "application/json", bytes.NewReader(ack))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	later := `{"channel":"reports","payload":{"n":2},"delay":"1h"}`
	resp, err = http.Post(node.URL()+"/v1/message?durability=committed", "application/json", strings.NewReader(later))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	// A create the WAL takes (no durability=committed): one group write,
	// synced.
	buffered := `{"channel":"audit","payload":{"n":3},"delay":"1h"}`
	resp, err = http.Post(node.URL()+"/v1/message", "application/json", strings.NewReader(buffered))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	resp, err = http.Get(node.URL() + "/metrics")
	require.NoError(t, err)
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	for _, want := range []string{
		`smq_messages_dead_lettered_total{channel="billing"} 1`,
		`smq_messages_created_total{channel="billing"} 1`,
		`smq_messages_polled_total{channel="billing"} 1`,
		`smq_messages_nacked_total{channel="billing"} 1`,
		`smq_messages_acked_total{channel="billing.DLQ"} 1`,
		`smq_queue_depth{channel="reports",status="PENDING"} 1`,
		`smq_buffer_depth `,
		`smq_flush_batch_size `,
		`smq_scheduler_lateness_seconds_bucket`,
		`smq_http_request_duration_seconds_count{code="201",operation="create-message"} 3`,
	} {
		require.Contains(t, string(text), want)
	}
	value := func(name string) float64 {
		_, v, ok := strings.Cut(string(text), "\n"+name+" ")
		require.True(t, ok, "no %s", name)
		v, _, _ = strings.Cut(v, "\n")
		n, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err)
		return n
	}
	require.GreaterOrEqual(t, value("smq_wal_syncs_total"), 1.0, "the WAL's write of a create is not counted as a sync")
	require.Greater(t, value("smq_wal_sync_seconds_total"), 0.0, "the WAL's write of a create took no time")
}
