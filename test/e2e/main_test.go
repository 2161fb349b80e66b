// Package e2e tests SMQ end to end: the real smq binary, as child
// processes, over real HTTP through the generated client, against a real
// PostgreSQL and an embedded Temporal server (test/harness starts them all).
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api/client"
	"github.com/smq/smq/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// at is a scheduled_at value for a create.
func at(t time.Time) *client.MessageIn_ScheduledAt {
	var s client.MessageIn_ScheduledAt
	if err := s.FromMessageInScheduledAt1(t.UTC().Format(time.RFC3339Nano)); err != nil {
		panic(err)
	}
	return &s
}

// create sends one message and returns its 201 body.
func create(ctx context.Context, c *client.ClientWithResponses, channel string, due time.Time, params *client.CreateMessageParams) (client.CreatedMessage, error) {
	in := client.MessageIn{Channel: channel, Payload: map[string]any{"due": due.Format(time.RFC3339Nano)}}
	if !due.IsZero() {
		in.ScheduledAt = at(due)
	}
	r, err := c.CreateMessageWithResponse(ctx, params, in)
	if err != nil {
		return client.CreatedMessage{}, err
	}
	if err := client.Check(r.HTTPResponse, r.Body); err != nil {
		return client.CreatedMessage{}, err
	}
	if r.JSON201 == nil {
		return client.CreatedMessage{}, fmt.Errorf("create: %s without a body", r.Status())
	}
	return *r.JSON201, nil
}

// mustCreate is create failing t.
func mustCreate(t *testing.T, c *client.ClientWithResponses, channel string, due time.Time) client.CreatedMessage {
	t.Helper()
	m, err := create(context.Background(), c, channel, due, nil)
	require.NoError(t, err)
	return m
}

// committed asks a create to answer once the message is in the database.
func committed() *client.CreateMessageParams {
	d := client.CreateMessageParamsDurabilityCommitted
	return &client.CreateMessageParams{Durability: &d}
}

// createBatch sends messages in one batch create and returns its results.
func createBatch(ctx context.Context, c *client.ClientWithResponses, channel string, due []time.Time) ([]client.BatchResult, error) {
	msgs := make([]client.MessageIn, len(due))
	for i, d := range due {
		msgs[i] = client.MessageIn{Channel: channel, Payload: map[string]any{"i": i}}
		if !d.IsZero() {
			msgs[i].ScheduledAt = at(d)
		}
	}
	r, err := c.CreateMessagesWithResponse(ctx, nil, client.CreateMessagesInputBody{Messages: &msgs})
	if err != nil {
		return nil, err
	}
	if err := client.Check(r.HTTPResponse, r.Body); err != nil {
		return nil, err
	}
	var out *client.BatchResults
	switch {
	case r.JSON201 != nil:
		out = r.JSON201
	case r.JSON200 != nil:
		out = r.JSON200
	}
	if out == nil || out.Results == nil {
		return nil, fmt.Errorf("batch create: %s without results", r.Status())
	}
	return *out.Results, nil
}

// pollOpts are a poll's query parameters.
type pollOpts struct {
	max        int64
	wait       int64 // seconds
	visibility int64 // seconds
	subsidize  bool
}

// poll leases up to o.max READY messages of channel.
func poll(ctx context.Context, c *client.ClientWithResponses, channel string, o pollOpts) ([]client.PolledMessage, error) {
	p := client.PollMessagesParams{}
	if o.max > 0 {
		p.Max = &o.max
	}
	if o.wait > 0 {
		p.Wait = &o.wait
	}
	if o.visibility > 0 {
		p.VisibilityTimeout = &o.visibility
	}
	if o.subsidize {
		p.Subsidize = &o.subsidize
	}
	r, err := c.PollMessagesWithResponse(ctx, channel, &p)
	if err != nil {
		return nil, err
	}
	if err := client.Check(r.HTTPResponse, r.Body); err != nil {
		return nil, err
	}
	if r.JSON200 == nil || r.JSON200.Messages == nil {
		return nil, nil
	}
	return *r.JSON200.Messages, nil
}

// ack acks the messages by their lease receipts and returns the count.
func ack(ctx context.Context, c *client.ClientWithResponses, ms []client.PolledMessage) (int64, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	receipts := make([]string, len(ms))
	for i, m := range ms {
		receipts[i] = m.Receipt
	}
	r, err := c.AckMessagesWithResponse(ctx, client.LeaseBody{Receipts: &receipts})
	if err != nil {
		return 0, err
	}
	if err := client.Check(r.HTTPResponse, r.Body); err != nil {
		return 0, err
	}
	return r.JSON200.Count, nil
}

// health reads a node's /v1/health.
func health(ctx context.Context, c *client.ClientWithResponses) (*client.HealthOutputBody, error) {
	limit := int64(100)
	r, err := c.HealthWithResponse(ctx, &client.HealthParams{Limit: &limit})
	if err != nil {
		return nil, err
	}
	if r.JSON200 == nil {
		return nil, fmt.Errorf("health: %s: %s", r.Status(), r.Body)
	}
	return r.JSON200, nil
}

// getMessage reads a message; found is false on 404.
func getMessage(ctx context.Context, c *client.ClientWithResponses, id string) (m client.MessageOut, found bool, err error) {
	r, err := c.GetMessageWithResponse(ctx, uuid.MustParse(id))
	if err != nil {
		return m, false, err
	}
	if r.StatusCode() == http.StatusNotFound {
		return m, false, nil
	}
	if err := client.Check(r.HTTPResponse, r.Body); err != nil {
		return m, false, err
	}
	return *r.JSON200, true, nil
}

// dbRows returns the status and region of each id's row in the database;
// ids without a row are absent from the map.
func dbRows(t *testing.T, pool *pgxpool.Pool, ids []string) map[string][2]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text, status, region FROM messages WHERE id = ANY($1::uuid[])`, ids)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var id, status, region string
		require.NoError(t, rows.Scan(&id, &status, &region))
		out[id] = [2]string{status, region}
	}
	require.NoError(t, rows.Err())
	return out
}
