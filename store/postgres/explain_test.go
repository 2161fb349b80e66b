package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// TestQueriesUseTheirIndexes checks that the scheduler's, the consumer's and
// the janitor's queries read their partial index, not the table: with many
// rows of other statuses around, each must stay an index scan.
func TestQueriesUseTheirIndexes(t *testing.T) {
	b := setup(t)
	msgs := make([]*store.Message, 5000)
	for i := range msgs {
		msgs[i] = newMessage("x", time.Now().Add(time.Duration(i)*time.Second))
	}
	b.insert(t, msgs...)
	_, err := b.store.Pool().Exec(b.ctx, `ANALYZE messages`)
	require.NoError(t, err)
	for _, c := range []struct{ name, query, index string }{
		{"scheduler", `SELECT id FROM messages WHERE status = 'PENDING' AND region = 'eu' AND scheduled_at <= now()
			ORDER BY scheduled_at LIMIT 1000 FOR UPDATE SKIP LOCKED`, "messages_pending_due"},
		{"next due", `SELECT min(scheduled_at) FROM messages WHERE status = 'PENDING' AND region = 'eu'`, "messages_pending_due"},
		{"consumer", `SELECT id FROM messages WHERE channel = 'x' AND status = 'READY' AND region = 'eu'
			ORDER BY scheduled_at LIMIT 100 FOR UPDATE SKIP LOCKED`, "messages_ready"},
		{"janitor", `SELECT id FROM messages WHERE status = 'ACQUIRED' AND region = 'eu' AND leased_until < now()
			ORDER BY leased_until LIMIT 1000 FOR UPDATE SKIP LOCKED`, "messages_leased"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows, err := b.store.Pool().Query(b.ctx, `EXPLAIN `+c.query)
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
		})
	}
}
