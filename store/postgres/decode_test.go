package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

// TestRawMessagesReadsWhatScanReads reads the same rows by the node's own
// decoder of the wire bytes and by pgx's Scan, through a plain query and
// through a pipeline as a lease sends it, and requires the same messages:
// every column set and unset, times before 1970, with microseconds, far in
// the future and given in other zones, an empty payload, bytes that are not
// UTF-8, and a negative attempt count.
func TestRawMessagesReadsWhatScanReads(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })

	_, err = conn.Exec(ctx, `INSERT INTO messages (id, channel, payload, status, scheduled_at, attempts, max_attempts,
			lease_token, leased_until, acquired_at, created_at, updated_at, region, dedup_key, original_channel, last_error)
		VALUES
		('0193a000-0000-7000-8000-000000000001', 'a', '{"n":1}', 'READY', '2026-12-06 21:00:00.123456+00', 0, 10,
			NULL, NULL, NULL, '2026-12-06 20:59:59+00', '2026-12-06 21:00:00+00', 'eu', NULL, NULL, NULL),
		('0193a000-0000-7000-8000-000000000002', 'a', '', 'ACQUIRED', '1969-07-20 20:17:40.000001-04', 7, 1000,
			'6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b', '9999-12-31 23:59:59.999999+00', '1901-01-01 00:00:00+05:30',
			'2000-01-01 00:00:00+00', '1999-12-31 23:59:59.999999+00', 'us-east1', 'key-1', 'a.src', 'smtp down: ünïcode'),
		('0193a000-0000-7000-8000-000000000003', 'b.DLQ', '\x00ff80', 'PENDING', '294276-12-31 23:59:59+00', -1, 1,
			NULL, NULL, NULL, now(), now(), '', '', '', '')`)
	require.NoError(t, err)
	sql := `SELECT ` + postgres.MessageCols + ` FROM messages m ORDER BY m.id`

	rows, err := conn.Query(ctx, sql)
	require.NoError(t, err)
	want, err := postgres.ScanMessages(rows)
	require.NoError(t, err)
	require.Len(t, want, 3)

	rows, err = conn.Query(ctx, sql)
	require.NoError(t, err)
	got, raw, err := postgres.CollectMessages(rows)
	require.NoError(t, err)
	require.True(t, raw, "a plain query's rows were not read raw")
	require.Equal(t, want, got)

	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	b.Queue(sql)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	require.NoError(t, err)
	rows, err = br.Query()
	require.NoError(t, err)
	got, raw, err = postgres.CollectMessages(rows)
	require.NoError(t, err)
	require.NoError(t, br.Close())
	require.True(t, raw, "a pipeline's rows were not read raw")
	require.Equal(t, want, got)

	// Other columns, or a column in text form, go through Scan.
	rows, err = conn.Query(ctx, `SELECT `+postgres.MessageCols+`, 1 FROM messages m`)
	require.NoError(t, err)
	_, raw, err = postgres.CollectMessages(rows)
	require.False(t, raw)
	require.Error(t, err, "a row of 17 columns scanned as a message")
	rows, err = conn.Query(ctx, sql, pgx.QueryResultFormats{pgx.TextFormatCode})
	require.NoError(t, err)
	got, raw, err = postgres.CollectMessages(rows)
	require.NoError(t, err)
	require.False(t, raw)
	require.Equal(t, want, got)
}
