package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/smq/smq/schema"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
)

// cockroachRegion is the locality of the single-node cluster the test
// starts, and the one region of its database.
const cockroachRegion = "us-east1"

// cockroachURL returns the admin URL of a CockroachDB: SMQ_TEST_COCKROACH_URL
// (a cluster with a node in region us-east1), or a single node started with
// testcontainers where a Docker engine answers. Otherwise the test is
// skipped: no CockroachDB binary can be had without one.
func cockroachURL(t *testing.T) string {
	if u := os.Getenv("SMQ_TEST_COCKROACH_URL"); u != "" {
		return u
	}
	ctx := context.Background()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err == nil {
		defer provider.Close()
		err = provider.Health(ctx)
	}
	if err != nil {
		t.Skipf("no CockroachDB to test against: SMQ_TEST_COCKROACH_URL is unset and no Docker engine answers (%v)", err)
	}
	c, err := testcontainers.Run(ctx, "cockroachdb/cockroach:v25.2.2",
		testcontainers.WithCmd("start-single-node", "--insecure", "--locality=region="+cockroachRegion),
		testcontainers.WithExposedPorts("26257/tcp"),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, wait.ForListeningPort("26257/tcp")))
	testcontainers.CleanupContainer(t, c)
	require.NoError(t, err)
	endpoint, err := c.PortEndpoint(ctx, "26257/tcp", "")
	require.NoError(t, err)
	return "postgres://root@" + endpoint + "/defaultdb?sslmode=disable"
}

// TestCockroach runs the message life on CockroachDB: the cockroach
// migrations (REGIONAL BY ROW messages, GLOBAL nodes), then create, promote,
// poll, ack, nack to the dead-letter channel and lease recovery through the
// same store, in the cockroach dialect (no LISTEN: wake-ups come from this
// process and the fallback poll).
func TestCockroach(t *testing.T) {
	admin := cockroachURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	db := fmt.Sprintf("smq_test_%d", time.Now().UnixNano())
	for _, stmt := range []string{
		`CREATE DATABASE ` + db,
		`ALTER DATABASE ` + db + ` SET PRIMARY REGION "` + cockroachRegion + `"`,
	} {
		_, err := conn.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), `DROP DATABASE `+db+` CASCADE`) })
	u, err := url.Parse(admin)
	require.NoError(t, err)
	u.Path = "/" + db
	dbURL := u.String()

	v, err := postgres.Migrate(ctx, dbURL, "")
	require.NoError(t, err)
	require.Positive(t, v)
	s, err := postgres.Open(ctx, dbURL, postgres.Options{Region: cockroachRegion})
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, schema.Cockroach, s.Dialect().Name)
	b := &bundle{ctx: ctx, store: s, url: dbURL}

	due := newMessage("crdb", time.Now().Add(200*time.Millisecond))
	due.MaxAttempts = 1
	b.insert(t, due, newMessage("crdb", time.Now().Add(time.Hour)))
	ready, cancel := s.Subscribe(store.ReadyTopic("crdb"))
	defer cancel()
	require.Eventually(t, func() bool {
		p, err := s.MessagePromote(ctx, &store.MessagePromoteParams{Region: cockroachRegion, Limit: 100})
		require.NoError(t, err)
		return p.Count == 1
	}, 10*time.Second, 20*time.Millisecond)
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("promotion did not wake the channel's waiters")
	}
	got, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: "crdb", Max: 10, Visibility: time.Minute, Region: cockroachRegion})
	require.NoError(t, err)
	require.Len(t, got, 1)
	_, err = s.MessageNack(ctx, &store.MessageNackParams{Receipts: receipts(got), Reason: "no"})
	require.NoError(t, err)
	dead, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: "crdb.DLQ", Max: 10, Visibility: time.Millisecond, Region: cockroachRegion})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Eventually(t, func() bool {
		r, err := s.MessageRecover(ctx, &store.MessageRecoverParams{Region: cockroachRegion, Limit: 10})
		require.NoError(t, err)
		return r.Retried == 1
	}, 10*time.Second, 20*time.Millisecond)
	regions, err := s.MessageRegions(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{cockroachRegion}, regions)
	require.NoError(t, s.NodeHeartbeat(ctx, &store.Node{ID: "n1", Region: cockroachRegion}))
}
