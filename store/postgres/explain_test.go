package postgres_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

// TestQueriesUseTheirIndexes checks that the scheduler's, the consumers' and
// the janitor's queries read their partial index, not the table, and read
// no more of it than they return: with many rows around, each must stay a
// bounded index scan, whether or not the table's statistics are fresh (a
// table that grew since its last ANALYZE is the normal case under load).
func TestQueriesUseTheirIndexes(t *testing.T) {
	b := setup(t)
	_, err := b.store.Pool().Exec(b.ctx, `ALTER TABLE messages SET (autovacuum_enabled = false)`)
	require.NoError(t, err)
	msgs := make([]*store.Message, 5000)
	for i := range msgs {
		msgs[i] = newMessage("x", time.Now().Add(time.Duration(i)*time.Second))
	}
	b.insert(t, msgs...)
	queries := []struct {
		name, query, index string
		maxRows            int // the most index entries the scan may read
	}{
		{"scheduler", `SELECT id FROM messages WHERE status = 'PENDING' AND region = 'eu' AND scheduled_at <= now()
			ORDER BY scheduled_at LIMIT 1000 FOR UPDATE SKIP LOCKED`, "messages_pending_due", 1000},
		{"next due", `SELECT scheduled_at FROM messages WHERE status = 'PENDING' AND region = 'eu'
			ORDER BY scheduled_at LIMIT 1`, "messages_pending_due", 1},
		{"consumer", `SELECT id FROM messages WHERE channel = 'x' AND status = 'READY' AND region = 'eu'
			ORDER BY scheduled_at LIMIT 100 FOR UPDATE SKIP LOCKED`, "messages_ready", 100},
		{"poll of due PENDING rows", `SELECT id FROM messages WHERE status = 'PENDING' AND region = 'eu' AND scheduled_at <= now()
			AND channel = 'x' ORDER BY scheduled_at LIMIT 100 FOR UPDATE SKIP LOCKED`, "messages_pending_due", 100},
		{"janitor", `SELECT id FROM messages WHERE status = 'ACQUIRED' AND region = 'eu' AND leased_until < now()
			ORDER BY leased_until LIMIT 1000 FOR UPDATE SKIP LOCKED`, "messages_leased", 1000},
	}
	actualRows := regexp.MustCompile(`actual time=\S+ rows=(\d+)`)
	for _, stats := range []string{"stale statistics", "fresh statistics"} {
		if stats == "fresh statistics" {
			_, err := b.store.Pool().Exec(b.ctx, `ANALYZE messages`)
			require.NoError(t, err)
		}
		for _, c := range queries {
			t.Run(stats+"/"+c.name, func(t *testing.T) {
				rows, err := b.store.Pool().Query(b.ctx, `EXPLAIN (ANALYZE, COSTS OFF) `+c.query)
				require.NoError(t, err)
				var plan []string
				for rows.Next() {
					var line string
					require.NoError(t, rows.Scan(&line))
					plan = append(plan, line)
				}
				require.NoError(t, rows.Err())
				text := strings.Join(plan, "\n")
				require.Contains(t, text, c.index, text)
				require.NotContains(t, text, "Seq Scan", text)
				for _, line := range plan {
					if !strings.Contains(line, c.index) {
						continue
					}
					m := actualRows.FindStringSubmatch(line)
					require.NotNil(t, m, text)
					n, _ := strconv.Atoi(m[1])
					require.LessOrEqual(t, n, c.maxRows, "the scan reads more of its index than the query returns:\n%s", text)
				}
			})
		}
	}
}

// TestPlansStayKeyedAfterEmptyVacuum reproduces a queue that drained and was
// vacuumed empty, then refills before its next ANALYZE, as the benchmark's
// reset between workloads does: the table's statistics say every row is
// READY (it was analyzed full of them), the hot paths run on the empty table
// more than the five times after which PostgreSQL may keep a generic plan,
// and the table grows. Then, on the store's one connection, every statement
// it prepared on messages must be planned with its parameters (no generic
// plan), except the leases and the statements by receipt, which must keep
// the plan they made on the empty table (keptPlans); and every plan for
// this table must read by index: no sequential scan
// of messages, no hash or merge join, rows found by id through the primary
// key, and the leases' index read only by the janitor's scan in lease
// order. With PostgreSQL's defaults the cached plans are sequential scans.
func TestPlansStayKeyedAfterEmptyVacuum(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.URL(t), postgres.Options{Region: "eu", MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	pool := s.Pool()
	b := &bundle{ctx: ctx, store: s}
	// One name serves as the channel and the region, so that any text
	// parameter of the statements below can be given it.
	const name = "eu"

	ready := make([]*store.Message, 2000)
	for i := range ready {
		ready[i] = newMessage(name, time.Now().Add(-time.Minute))
	}
	b.insert(t, ready...)
	for _, sql := range []string{`ALTER TABLE messages SET (autovacuum_enabled = false)`, `ANALYZE messages`,
		`TRUNCATE messages`, `VACUUM messages`} {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}

	stranger := []store.Receipt{{ID: uuid.New(), Token: uuid.New()}}
	hotPaths := func() {
		t.Helper()
		_, err := s.MessagePromote(ctx, &store.MessagePromoteParams{Region: name, Limit: 1000})
		require.NoError(t, err)
		_, err = s.MessagePoll(ctx, &store.MessagePollParams{Channel: name, Max: 1000, Visibility: time.Minute, Region: name})
		require.NoError(t, err)
		_, err = s.MessageAck(ctx, &store.MessageAckParams{Receipts: stranger})
		require.ErrorIs(t, err, store.ErrStaleLease)
		_, err = s.MessageAck(ctx, &store.MessageAckParams{IDs: []uuid.UUID{uuid.New()}})
		require.NoError(t, err)
		_, err = s.MessageNack(ctx, &store.MessageNackParams{Receipts: stranger})
		require.ErrorIs(t, err, store.ErrStaleLease)
		_, err = s.MessageNack(ctx, &store.MessageNackParams{IDs: []uuid.UUID{uuid.New()}})
		require.NoError(t, err)
		_, err = s.MessageExtend(ctx, &store.MessageExtendParams{Receipts: stranger, Visibility: time.Minute})
		require.ErrorIs(t, err, store.ErrStaleLease)
		_, err = s.MessageRecover(ctx, &store.MessageRecoverParams{Region: name, Limit: 1000})
		require.NoError(t, err)
		_, err = s.MessageNextDue(ctx, name)
		require.NoError(t, err)
		again := newMessage(name, time.Now().Add(time.Hour))
		again.DedupKey = "once"
		_, err = s.MessageInsertMany(ctx, &store.MessageInsertManyParams{Messages: []*store.Message{again}})
		require.NoError(t, err)
	}
	for range 7 {
		hotPaths()
	}

	// The table refills: PENDING rows due later, READY rows, and leases.
	grown := make([]*store.Message, 0, 60_000)
	for i := range 30_000 {
		grown = append(grown, newMessage(name, time.Now().Add(time.Duration(i)*time.Second)),
			newMessage(name, time.Now().Add(-time.Minute)))
	}
	for chunk := range slices.Chunk(grown, 10_000) {
		b.insert(t, chunk...)
	}
	var leases []*store.Message
	for len(leases) < 10_000 {
		msgs, err := s.MessagePoll(ctx, &store.MessagePollParams{Channel: name, Max: 1000, Visibility: time.Hour, Region: name})
		require.NoError(t, err)
		require.NotEmpty(t, msgs)
		leases = append(leases, msgs...)
	}
	hotPaths()

	// Parameters to plan the statements with, by type: a request's worth of
	// ids and receipts of current leases.
	var ids, keys []string
	for _, m := range leases[:1000] {
		ids = append(ids, m.ID.String())
		keys = append(keys, m.ID.String()+m.LeaseToken.String())
	}
	values := map[string]string{
		"text": name, "integer": "1000", "bigint": "1000", "interval": "1 minute", "double precision": "1",
		"uuid[]": "{" + strings.Join(ids, ",") + "}", "text[]": "{" + strings.Join(keys, ",") + "}",
	}

	rows, err := pool.Query(ctx, `SELECT name, statement, parameter_types::text[], generic_plans
		FROM pg_prepared_statements
		WHERE statement LIKE '%messages%WHERE%' AND statement NOT LIKE '%pg_prepared_statements%'
			AND statement NOT LIKE 'INSERT%'`) // not pgx's description of a COPY's columns, nor the inserts
	require.NoError(t, err)
	type prepared struct {
		name, sql string
		types     []string
		generic   int64
	}
	statements, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (p prepared, err error) {
		return p, r.Scan(&p.name, &p.sql, &p.types, &p.generic)
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(statements), 10, "the hot paths prepared their statements on the one connection")

	kept := 0
	for _, p := range statements {
		sql := strings.Join(strings.Fields(p.sql), " ")
		// Leases and statements by receipt keep the plan they made, under
		// keptPlans, on the empty table; the others are planned each time.
		keep := strings.Contains(sql, "SET status = 'ACQUIRED'") || strings.Contains(sql, "m.lease_token::text = ANY(")
		if keep {
			kept++
			require.Positive(t, p.generic, "a lease or a statement by receipt was planned on every run:\n%s", sql)
		} else {
			require.Zero(t, p.generic, "planned once for all parameters and table sizes:\n%s", sql)
		}
		args := make([]string, len(p.types))
		for i, typ := range p.types {
			v, ok := values[typ]
			require.True(t, ok, "no value for a parameter of type %s:\n%s", typ, sql)
			args[i] = "'" + v + "'::" + typ
		}
		// Under keptPlans, EXPLAIN EXECUTE shows the plan the statement keeps.
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		if keep {
			_, err = tx.Exec(ctx, `SELECT `+postgres.KeptPlans)
			require.NoError(t, err)
		}
		rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) EXECUTE `+p.name+`(`+strings.Join(args, ", ")+`)`)
		require.NoError(t, err, sql)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err, sql)
		require.NoError(t, tx.Rollback(ctx))
		plan := strings.Join(lines, "\n")
		msg := "%s\n%s"
		require.NotContains(t, plan, "Seq Scan on messages", msg, sql, plan)
		require.NotContains(t, plan, "Hash Join", msg, sql, plan)
		require.NotContains(t, plan, "Merge Join", msg, sql, plan)
		if strings.HasPrefix(sql, "UPDATE") || strings.HasPrefix(sql, "DELETE") {
			require.True(t, strings.Contains(plan, "messages_pkey") || strings.Contains(plan, "Tid Scan on messages m"),
				"rows found by primary key or by ctid: "+msg, sql, plan)
		}
		if !strings.Contains(sql, "ORDER BY leased_until") {
			require.NotContains(t, plan, "messages_leased", "reads every lease: "+msg, sql, plan)
		}
	}
	// The local and the other regions' READY rows, due PENDING rows; acks,
	// nacks and extends by receipt.
	require.Equal(t, 6, kept, "statements that keep their plan")
}

// TestManyReceiptsArePlannedWithThem checks that an ack of a few receipts
// runs the plan its statement keeps, and an ack of many a plan made with
// them, in which PostgreSQL hashes the receipts' keys: kept, the plan
// compares every row's key with every receipt's.
func TestManyReceiptsArePlannedWithThem(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.URL(t), postgres.Options{Region: "eu", MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	b := &bundle{ctx: ctx, store: s}
	msgs := make([]*store.Message, 30)
	for i := range msgs {
		msgs[i] = newMessage("x", time.Now().Add(-time.Minute))
	}
	b.insert(t, msgs...)
	leased := b.poll(t, "x", len(msgs), time.Hour)
	require.Len(t, leased, len(msgs))

	plans := func() (generic, custom int64) {
		t.Helper()
		err := s.Pool().QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements
			WHERE statement LIKE 'DELETE FROM messages%lease_token%'`).Scan(&generic, &custom)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, 0
		}
		require.NoError(t, err)
		return generic, custom
	}
	for _, c := range []struct {
		receipts        int
		generic, custom int64
	}{{1, 1, 0}, {8, 2, 0}, {9, 2, 1}, {12, 2, 2}} {
		_, err := s.MessageAck(ctx, &store.MessageAckParams{Receipts: receipts(leased[:c.receipts])})
		require.NoError(t, err)
		leased = leased[c.receipts:]
		generic, custom := plans()
		require.Equal(t, [2]int64{c.generic, c.custom}, [2]int64{generic, custom},
			"generic and custom plans of the ack after one of %d receipts", c.receipts)
	}
}
