package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Loopback latency, one client: create (WAL mode), poll (max=1 on a
// channel of READY messages) and the health endpoints, each with the raw
// client (as wrk) and then with net/http's.
const (
	loopbackN    = 3000
	loopbackWarm = 300
)

// loopbackOps name the operations, in the order they run.
var loopbackOps = []string{"create (WAL)", "poll (max=1)", "GET /livez", "GET /v1/health"}

func (b *bench) loopback(n *smqNode) {
	n.reset()
	ops := []struct {
		name string
		op   func(ctx context.Context, d doer) error
	}{
		{loopbackOps[0], func(ctx context.Context, d doer) error { return createVia(ctx, d, "loop", time.Now().Add(time.Hour)) }},
		{loopbackOps[1], func(ctx context.Context, d doer) error {
			msgs, err := pollVia(ctx, d, "loop-ready", 1, 0)
			if err == nil && len(msgs) != 1 {
				err = fmt.Errorf("poll returned %d messages, want 1", len(msgs))
			}
			return err
		}},
		{loopbackOps[2], func(ctx context.Context, d doer) error { return expectVia(ctx, d, "/livez") }},
		{loopbackOps[3], func(ctx context.Context, d doer) error { return expectVia(ctx, d, "/v1/health") }},
	}
	raw, err := newRawConn(n.client.base)
	b.must(err, "raw client")
	defer raw.close()
	clients := []struct {
		d   doer
		res map[string]summary
	}{{raw, b.res.loopback}, {n.client, b.res.loopbackStd}}
	due := time.Now().Add(-time.Minute)
	b.must(b.copyMessages("loop-ready", "READY", func(int) time.Time { return due }, len(clients)*(loopbackN+loopbackWarm)+100), "loopback ready")
	for _, o := range ops {
		for _, c := range clients {
			d, err := sequential(b.ctx, loopbackN, loopbackWarm, func(ctx context.Context, _ int) error { return o.op(ctx, c.d) })
			b.must(err, "loopback "+o.name)
			s := d.summary()
			b.res.mu.Lock()
			c.res[o.name] = s
			b.res.mu.Unlock()
			b.t.Logf("loopback %s (%T): p50 %s ms, p99 %s ms", o.name, c.d, ms(s.P50), ms(s.P99))
		}
	}
}

// expectVia sends GET path through d and expects a 200.
func expectVia(ctx context.Context, d doer, path string) error {
	code, body, err := d.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return check(code, body, http.StatusOK)
}

// Idle: with no traffic, how many transactions SMQ runs against its
// database, from pg_stat_database. A backend that goes idle reports its
// last counts up to 10 s later (PostgreSQL 15's idle stats interval), so
// the window opens only after idleSettle without traffic; then the
// statements themselves are counted from PostgreSQL's log.
const (
	idleSettle = 12 * time.Second
	idleWindow = 10 * time.Second
)

func (b *bench) idle(n *smqNode) {
	n.reset()
	time.Sleep(idleSettle)
	x0, err := b.xacts(dbSMQ)
	b.must(err, "idle xacts")
	t0 := time.Now()
	time.Sleep(idleWindow)
	x1, err := b.xacts(dbSMQ)
	b.must(err, "idle xacts")
	window := time.Since(t0)
	r := &idleResult{Window: window, Xacts: x1 - x0, PerSec: float64(x1-x0) / window.Seconds(),
		Details: fmt.Sprintf("xact_commit + xact_rollback of database %q in pg_stat_database, read %s apart after %s without traffic",
			dbSMQ, window.Round(time.Millisecond), idleSettle)}
	stmts, err := b.captureStatements(dbSMQ, idleWindow)
	if err != nil {
		b.res.note(fmt.Sprintf("idle: statement log capture failed: %v", err))
	}
	r.Statements, r.StatementWindow = stmts, idleWindow
	b.res.mu.Lock()
	b.res.idle = r
	b.res.mu.Unlock()
	b.t.Logf("idle: %d transactions in %s = %.1f/s", r.Xacts, window.Round(time.Millisecond), r.PerSec)
}

// captureStatements turns on PostgreSQL's statement log for d and counts
// the statements database db ran, by text (first line, whitespace
// collapsed), most frequent first.
func (b *bench) captureStatements(db string, d time.Duration) ([]statementCount, error) {
	set := func(sqls ...string) error {
		for _, q := range sqls {
			if _, err := b.admin.Exec(b.ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	logPath := filepath.Join(b.dir, "pg", "postgres.log")
	if err := set(`ALTER SYSTEM SET log_line_prefix = '%m [%p] db=%d '`, `ALTER SYSTEM SET log_statement = 'all'`, `SELECT pg_reload_conf()`); err != nil {
		return nil, err
	}
	// Give every backend time to read the new settings.
	time.Sleep(time.Second)
	fi, err := os.Stat(logPath)
	if err != nil {
		return nil, err
	}
	time.Sleep(d)
	if err := set(`ALTER SYSTEM RESET log_statement`, `ALTER SYSTEM RESET log_line_prefix`, `SELECT pg_reload_conf()`); err != nil {
		return nil, err
	}
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(fi.Size(), io.SeekStart); err != nil {
		return nil, err
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	marker := " db=" + db + " LOG:  "
	for sc.Scan() {
		_, rest, ok := strings.Cut(sc.Text(), marker)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "statement: "):
			rest = strings.TrimPrefix(rest, "statement: ")
		case strings.HasPrefix(rest, "execute "):
			_, rest, _ = strings.Cut(rest, ": ")
		default:
			continue
		}
		rest = strings.Join(strings.Fields(rest), " ")
		if len(rest) > 120 {
			rest = rest[:120] + "…"
		}
		counts[rest]++
	}
	var out []statementCount
	for q, n := range counts {
		out = append(out, statementCount{Statement: q, Count: n})
	}
	slices.SortFunc(out, func(a, b statementCount) int {
		return cmp.Or(b.Count-a.Count, strings.Compare(a.Statement, b.Statement))
	})
	return out, sc.Err()
}
