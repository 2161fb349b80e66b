package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/smq/smq/schema"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/store/postgres/localpg"
	"github.com/smq/smq/test/pgtest"
)

// PG is a PostgreSQL server of one test, which the test may stop and start
// again (on the same directory and port) to play a database outage.
type PG struct {
	srv *localpg.Server
	dir string
	n   atomic.Int64 // databases made by NewDatabase
}

// Postgres starts a PostgreSQL server for t alone (fsync off), in
// t.TempDir, stopped when t ends. It takes about a second or two (initdb).
// Tests that never stop the database are quicker with Database.
func Postgres(t testing.TB) *PG {
	t.Helper()
	base := t.TempDir()
	// As root the server runs as the postgres user, who must reach the
	// directory through t.TempDir's private (0700) parents.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("harness: postgres: %v", err)
		}
	}
	dir := filepath.Join(base, "pg")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := localpg.Start(ctx, localpg.Config{Dir: dir, Fast: true})
	if err != nil {
		t.Fatalf("harness: postgres: %v", err)
	}
	p := &PG{srv: srv, dir: dir}
	t.Cleanup(func() { _ = srv.Stop() })
	var l logs
	l.add(t, "postgres", filepath.Join(dir, "postgres.log"))
	return p
}

// Stop shuts the server down (fast: open transactions are aborted) and
// waits for it to exit.
func (p *PG) Stop() error { return p.srv.Stop() }

// Start starts the stopped server again, on the same data and port, and
// returns once it accepts connections.
func (p *PG) Start(ctx context.Context) error { return p.srv.Start(ctx) }

// Port is the server's TCP port.
func (p *PG) Port() int { return p.srv.Port() }

// URL is the connection URL of database db.
func (p *PG) URL(db string) string { return p.srv.URL(db) }

// AdminURL is the URL of the postgres database, for administration.
func (p *PG) AdminURL() string { return p.srv.URL("postgres") }

// NewDatabase creates a database on the server, applies SMQ's migrations to
// it and returns its URL.
func (p *PG) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("smq_%d", p.n.Add(1))
	conn, err := pgx.Connect(ctx, p.AdminURL())
	if err != nil {
		t.Fatalf("harness: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("harness: create database: %v", err)
	}
	url := p.URL(name)
	if _, err := postgres.Migrate(ctx, url, schema.Postgres); err != nil {
		t.Fatalf("harness: migrate %s: %v", name, err)
	}
	return url
}

// Database returns the URL of a fresh, migrated database on the PostgreSQL
// server shared by the test process (pgtest's: SMQ_TEST_DATABASE_URL, or one
// started on first use), dropped when t ends. Call pgtest.Stop (or use Main)
// at the end of the run.
func Database(t testing.TB) string {
	t.Helper()
	return pgtest.URL(t)
}

// Main runs the tests, stops what the test process shared (the
// SharedTemporal server, the PostgreSQL server Database started) and then,
// when the tests passed, fails the run if goroutines leaked (goleak): call
// it from TestMain as os.Exit(harness.Main(m)).
func Main(m *testing.M, leakOpts ...goleak.Option) int {
	code := m.Run()
	stopShared()
	pgtest.Stop()
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

// Pool opens a connection pool to url, closed when t ends, for checks of
// the database's contents.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("harness: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
