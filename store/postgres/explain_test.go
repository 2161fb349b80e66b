package postgres_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
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
