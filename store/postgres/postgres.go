// Package postgres implements store.Store and store.Notifier with pgx, for
// PostgreSQL and for CockroachDB. The two share every query; a Dialect holds
// the few places where they differ.
package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smq/smq/schema"
	"github.com/smq/smq/store"
)

var (
	_ store.Store    = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
)

// Options configure a Store.
type Options struct {
	// Region is this node's region, written on the rows it inserts.
	// Defaults to "local".
	Region string
	// Dialect is "postgres" or "cockroach". Defaults to what the server says
	// it is.
	Dialect string
	// MaxConns bounds the connection pool. Defaults to 32.
	MaxConns int32
	// ConnectTimeout bounds each connection attempt, so that requests fail
	// fast with ErrUnavailable when the database is down. Defaults to 3 s.
	ConnectTimeout time.Duration
	// FallbackPoll is how often waiters re-check the database where the
	// database cannot push notifications (CockroachDB has no LISTEN).
	// Defaults to 200 ms.
	FallbackPoll time.Duration
	// Logger receives the store's own events (listener reconnects).
	// Defaults to slog.Default().
	Logger *slog.Logger
	// OnDeadLetter, when set, is told of every message moved to a
	// dead-letter channel (by a nack or by the janitor), with the channel
	// it came from, so that metrics can count them. It must not block.
	// Defaults to nil.
	OnDeadLetter func(channel string)
	// OnClaimDue, when set, is told of the due PENDING messages a poll
	// leased without waiting for their promotion, with how late each was
	// (lease time − scheduled time), so that the scheduler's lateness
	// metric counts them. It must not block. Defaults to nil.
	OnClaimDue func(store.Promoted)
	// CopyMin is the smallest MessageInsertMany batch (without dedup keys)
	// written with COPY; a negative value never uses COPY. Defaults to 200.
	CopyMin int
	// NodeListTTL is how long NodeList serves a page it read before, unless
	// a write to nodes through this Store came since: health checks list
	// the nodes on every call. A negative value reads every time. Defaults
	// to 1 s; heartbeats come every few seconds, so a second adds little to
	// how stale a listed heartbeat can be.
	NodeListTTL time.Duration
}

func (o Options) withDefaults() Options {
	o.Region = cmp.Or(o.Region, "local")
	o.MaxConns = cmp.Or(o.MaxConns, 32)
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, 3*time.Second)
	o.FallbackPoll = cmp.Or(o.FallbackPoll, 200*time.Millisecond)
	o.CopyMin = cmp.Or(o.CopyMin, 200)
	o.NodeListTTL = cmp.Or(o.NodeListTTL, time.Second)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Dialect holds what differs between PostgreSQL and CockroachDB.
type Dialect struct {
	// Name is schema.Postgres or schema.Cockroach.
	Name string
	// RegionType is the SQL type of messages.region: text on PostgreSQL,
	// crdb_internal_region under REGIONAL BY ROW on CockroachDB.
	RegionType string
	// Listen tells whether the database pushes notifications
	// (LISTEN/NOTIFY). CockroachDB does not, so there wake-ups come from this
	// process and a short poll.
	Listen bool
	// Copy tells whether large flushes may use COPY. CockroachDB's COPY
	// into a REGIONAL BY ROW table is untested, so it keeps INSERT.
	Copy bool
	// RowID is the column an UPDATE finds the rows of its locking
	// sub-select by (see lockedRows): ctid on PostgreSQL, id on
	// CockroachDB, which has no ctid.
	RowID string
	// AsyncLease tells whether a lease may commit without waiting for the
	// disk (see Store.lease): PostgreSQL's synchronous_commit, set for the
	// lease's transaction alone. CockroachDB has no such setting.
	AsyncLease bool
	// KeptPlans tells whether the hot per-message statements may keep one
	// plan, made with only index reads allowed (see keptPlans): PostgreSQL's
	// plan_cache_mode and enable_* settings, set for their transaction
	// alone. CockroachDB plans each statement itself.
	KeptPlans bool
}

// DialectFor returns the dialect named name.
func DialectFor(name string) (Dialect, error) {
	switch name {
	case schema.Postgres:
		return Dialect{Name: name, RegionType: "text", Listen: true, Copy: true, RowID: "ctid", AsyncLease: true, KeptPlans: true}, nil
	case schema.Cockroach:
		return Dialect{Name: name, RegionType: "crdb_internal_region", Listen: false, RowID: "id"}, nil
	}
	return Dialect{}, fmt.Errorf("unknown dialect %q (want %q or %q)", name, schema.Postgres, schema.Cockroach)
}

// Store is the pgx implementation of store.Store and store.Notifier.
type Store struct {
	polls   polls
	nodes   nodeCache
	pool    *pgxpool.Pool
	opts    Options
	dialect Dialect
	hub     *hub
	stop    context.CancelFunc
	done    chan struct{} // closed when the listener has stopped
}

// Open connects to url and starts the notification listener. It does not
// migrate: run Migrate first.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.AfterConnect = keyedPlans
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	name := opts.Dialect
	if name == "" {
		if name, err = detectDialect(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	d, err := DialectFor(name)
	if err != nil {
		pool.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	s := &Store{pool: pool, opts: opts, dialect: d, hub: newHub(), stop: stop, done: make(chan struct{})}
	if d.Listen {
		go s.listen(lctx, cfg.ConnConfig)
	} else {
		go s.pollFallback(lctx)
	}
	return s, nil
}

// keptPlans, run in a transaction before one of the statements that a
// poll or an ack runs for every few messages (the leases, and the acks,
// nacks and extends of a few receipts: see Store.strict), lets PostgreSQL
// keep one plan for the statement instead of planning it on every run (see
// keyedPlans), with sequential and bitmap scans ruled out. Planning a
// one-message lease cost 0.258 ms against 0.075 ms to run it; planning an
// ack 0.107 ms. The plan kept is the one keyedPlans gets from fresh
// statistics: for a lease, an index scan in due order, then the rows found
// by ctid; for receipts, lookups by primary key. That holds whatever the
// table held when the plan was made, an empty table included
// (TestPlansStayKeyedAfterEmptyVacuum). The statements that read a range
// whose size their parameters decide (promotion, the janitor, next due)
// are still planned with their parameters. The settings hold for these
// transactions whatever the connection's URL sets.
const keptPlans = `set_config('plan_cache_mode', 'force_generic_plan', true), ` +
	`set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)`

// keyedPlans has PostgreSQL plan each statement of a new connection with
// its parameters and the table's current size (plan_cache_mode =
// force_custom_plan), unless the connection's URL says otherwise; the
// statements run under keptPlans are the exception.
//
// pgx prepares every statement once per connection, and by default
// PostgreSQL settles on a generic plan after five runs and keeps it until
// the table's statistics change. Made while messages was vacuumed empty (a
// queue that drained, or the benchmark's reset between workloads), that
// plan is a sequential scan for every query here, lookups by id included,
// and it stayed while the table refilled: 0.6 of PostgreSQL's cores at
// 9,000 creates a second, and a drain at 19,768 msgs/s instead of 31,700.
// Planned afresh, the statements read by index, since none of them leaves
// the planner a join to size from statistics (see pollRegion, byIDs,
// leased). CockroachDB, which says so in its crdb_version parameter, plans
// each statement itself.
func keyedPlans(ctx context.Context, conn *pgx.Conn) error {
	if conn.PgConn().ParameterStatus("crdb_version") != "" {
		return nil
	}
	if _, set := conn.Config().RuntimeParams["plan_cache_mode"]; set {
		return nil
	}
	_, err := conn.Exec(ctx, `SET plan_cache_mode = force_custom_plan`)
	return err
}

func detectDialect(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var version string
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return "", fmt.Errorf("detect dialect: %w", mapErr(err))
	}
	if strings.Contains(version, "CockroachDB") {
		return schema.Cockroach, nil
	}
	return schema.Postgres, nil
}

// Dialect returns the dialect in use.
func (s *Store) Dialect() Dialect { return s.dialect }

// Pool returns the connection pool, for tests and benchmarks.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the listener and closes the pool.
func (s *Store) Close() {
	s.stop()
	<-s.done
	s.pool.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return mapErr(s.pool.Ping(ctx))
}

// mapErr turns a failure to reach the database into store.ErrUnavailable,
// keeping the cause in the message.
func mapErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 is connection exception; 57P0x are shutdowns and
		// "cannot connect now" during start-up.
		if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P0") {
			return fmt.Errorf("%w: %s", store.ErrUnavailable, pgErr.Message)
		}
		return err
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connectErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgx.ErrTxClosed) || strings.Contains(err.Error(), "conn closed") {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}
