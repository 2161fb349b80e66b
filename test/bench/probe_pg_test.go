package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smq/smq/test/pgtest"
)

// TestMain stops the PostgreSQL that pgtest may start for TestPendingProbe,
// without pgtest.Run's leak check: TestBench's River clients leave
// goroutines of their own behind.
func TestMain(m *testing.M) { os.Exit(pgtest.RunUnchecked(m)) }

// The probe of "all pollable" sees every PENDING row of the plan's range,
// including one that goes back to PENDING behind its cursor, and ignores
// the rows of other channels and beyond the range.
func TestPendingProbe(t *testing.T) {
	ctx := context.Background()
	db, err := pgxpool.New(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var now time.Time
	if err := db.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	// r0-r4 are due; r5-r9 are an hour away, so that the cursor stops at
	// now() rather than at r5.
	at := func(i int) time.Time {
		if i < 5 {
			return now.Add(time.Duration(i-5) * time.Second)
		}
		return now.Add(time.Hour + time.Duration(i)*time.Second)
	}
	insert := func(id, channel string, due time.Time) {
		t.Helper()
		if _, err := db.Exec(ctx, `INSERT INTO messages (id, channel, payload, status, scheduled_at, region)
			VALUES ($1::uuid, $2, '{}', 'PENDING', $3, $4)`, id, channel, due, smqRegion); err != nil {
			t.Fatal(err)
		}
	}
	id := func(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i) }
	for i := range 10 {
		insert(id(i), "plan", at(i))
	}
	insert("10000000-0000-0000-0000-000000000000", "other", at(7))
	insert("20000000-0000-0000-0000-000000000000", "plan", now.Add(3*time.Hour))
	set := func(status, cond string) {
		t.Helper()
		if _, err := db.Exec(ctx, `UPDATE messages SET status = $1 WHERE `+cond, status); err != nil {
			t.Fatal(err)
		}
	}
	p := &pendingProbe{db: db, channel: "plan", from: at(0).Add(-time.Second), end: now.Add(2 * time.Hour)}
	want := func(step string, none bool) {
		t.Helper()
		got, err := p.none(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != none {
			t.Fatalf("%s: none = %v, want %v (cursor %s)", step, got, none, p.from)
		}
	}

	want("all PENDING", false)
	// The cursor is now r0's due time; r0 itself must still count.
	set("READY", `channel = 'plan' AND id <> '`+id(0)+`'::uuid`)
	want("all READY but r0, at the cursor", false)
	set("PENDING", `channel = 'plan' AND id <> '`+id(0)+`'::uuid`)
	set("READY", `channel = 'plan' AND scheduled_at <= now()`)
	want("the due half READY", false)
	if !p.from.Before(at(5)) {
		t.Fatalf("cursor %s is past now(): a row recovered now would be missed", p.from)
	}
	set("READY", `channel = 'plan' AND scheduled_at > now() AND scheduled_at < now() + interval '2 hours'`)
	// A lease recovered after the last probe, as the janitor does it.
	set("PENDING", `id = '`+id(1)+`'::uuid`)
	if _, err := db.Exec(ctx, `UPDATE messages SET scheduled_at = now() WHERE id = $1::uuid`, id(1)); err != nil {
		t.Fatal(err)
	}
	want("one row back to PENDING behind the cursor", false)
	set("READY", `id = '`+id(1)+`'::uuid`)
	want("all READY but other channels and later rows", true)
}
