package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// River's settings as the workloads name them. Defaults are River's own
// (FetchCooldown 100 ms, FetchPollInterval 1 s); tuned are the settings
// issue 7 quotes (FetchCooldown 2 ms, FetchPollInterval 20 ms). Both run
// riverMaxWorkers workers on the one queue.
type riverSettings struct {
	Name              string
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
}

const riverMaxWorkers = 100

var (
	riverDefaults = riverSettings{Name: sysRiverDef}
	riverTuned    = riverSettings{Name: sysRiverTuned, FetchCooldown: 2 * time.Millisecond, FetchPollInterval: 20 * time.Millisecond}
)

func (s riverSettings) String() string {
	if s.FetchCooldown == 0 {
		return "River defaults (FetchCooldown 100ms, FetchPollInterval 1s), MaxWorkers 100"
	}
	return "FetchCooldown " + s.FetchCooldown.String() + ", FetchPollInterval " + s.FetchPollInterval.String() + ", MaxWorkers 100"
}

// benchArgs is the River job of every workload: an empty job, so River's
// own machinery is what is measured.
type benchArgs struct {
	N int `json:"n"`
}

func (benchArgs) Kind() string { return "bench" }

type benchWorker struct {
	river.WorkerDefaults[benchArgs]
	run func(job *river.Job[benchArgs])
}

func (w *benchWorker) Work(_ context.Context, job *river.Job[benchArgs]) error {
	w.run(job)
	return nil
}

// migrateRiver applies River's migrations to its database.
func (b *bench) migrateRiver() {
	m, err := rivermigrate.New(riverpgxv5.New(b.riverDB), nil)
	if err != nil {
		b.fail("%v", err)
	}
	if _, err := m.Migrate(b.ctx, rivermigrate.DirectionUp, nil); err != nil {
		b.fail("river migrate: %v", err)
	}
}

// riverInserter is a River client that only inserts.
func (b *bench) riverInserter() *river.Client[pgx.Tx] {
	c, err := river.NewClient(riverpgxv5.New(b.riverDB), &river.Config{})
	if err != nil {
		b.fail("%v", err)
	}
	return c
}

// riverWorkers starts a River client working the default queue with the
// given settings; run is called at the start of every job. The returned
// stop waits for the client to stop.
func (b *bench) riverWorkers(s riverSettings, run func(job *river.Job[benchArgs])) (stop func()) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &benchWorker{run: run})
	c, err := river.NewClient(riverpgxv5.New(b.riverDB), &river.Config{
		FetchCooldown:     s.FetchCooldown,
		FetchPollInterval: s.FetchPollInterval,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: riverMaxWorkers}},
		Workers:           workers,
		Logger:            quietLogger(),
	})
	if err != nil {
		b.fail("%v", err)
	}
	if err := c.Start(b.ctx); err != nil {
		b.fail("%v", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	}
}

func (b *bench) resetRiver() {
	if _, err := b.riverDB.Exec(b.ctx, `TRUNCATE river_job`); err != nil {
		b.fail("%v", err)
	}
	b.vacuum(b.riverDB, "river_job")
}

// The hand-written queue: one table, consumed with FOR UPDATE SKIP LOCKED;
// a consumer deletes what it takes in the same statement (take and ack at
// once), pgqBatch rows at a time.
const (
	pgqSchema = `CREATE TABLE IF NOT EXISTS jobs (
		id           bigserial   PRIMARY KEY,
		channel      text        NOT NULL,
		payload      jsonb       NOT NULL,
		scheduled_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX IF NOT EXISTS jobs_due ON jobs (scheduled_at)`
	pgqInsert = `INSERT INTO jobs (channel, payload, scheduled_at) VALUES ($1, '{"n":1}', $2)`
	pgqTake   = `DELETE FROM jobs WHERE id IN (
		SELECT id FROM jobs WHERE scheduled_at <= now() ORDER BY scheduled_at LIMIT $1 FOR UPDATE SKIP LOCKED
	) RETURNING scheduled_at`
	pgqBatch     = 10
	pgqConsumers = 8
	pgqPollEvery = 20 * time.Millisecond
)

func (b *bench) setupPGQ() {
	if _, err := b.pgqDB.Exec(b.ctx, pgqSchema); err != nil {
		b.fail("%v", err)
	}
}

func (b *bench) resetPGQ() {
	if _, err := b.pgqDB.Exec(b.ctx, `TRUNCATE jobs`); err != nil {
		b.fail("%v", err)
	}
	b.vacuum(b.pgqDB, "jobs")
}

// pgqConsume runs consumers that take due rows until ctx ends, sleeping
// pgqPollEvery whenever a take comes back short; got receives each taken
// row's scheduled time and the time it was taken.
func pgqConsume(ctx context.Context, db *pgxpool.Pool, got func(scheduled, taken time.Time)) (wait func()) {
	done := make(chan struct{}, pgqConsumers)
	for range pgqConsumers {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				rows, err := db.Query(ctx, pgqTake, pgqBatch)
				if err != nil {
					continue
				}
				n := 0
				var at time.Time
				for rows.Next() {
					if rows.Scan(&at) == nil {
						got(at, time.Now())
						n++
					}
				}
				rows.Close()
				if n < pgqBatch {
					select {
					case <-ctx.Done():
					case <-time.After(pgqPollEvery):
					}
				}
			}
		}()
	}
	return func() {
		for range pgqConsumers {
			<-done
		}
	}
}

// vacuum keeps the dead rows of one run out of the next.
func (b *bench) vacuum(db *pgxpool.Pool, table string) {
	if _, err := db.Exec(b.ctx, `VACUUM ANALYZE `+pgx.Identifier{table}.Sanitize()); err != nil {
		b.fail("vacuum %s: %v", table, err)
	}
}

// analyze refreshes a table's statistics after a workload loaded it, as
// autovacuum would within a minute: every system gets the same treatment,
// so no plan is made from the statistics of the empty table a reset left.
func (b *bench) analyze(db *pgxpool.Pool, table string) {
	if _, err := db.Exec(b.ctx, `ANALYZE `+pgx.Identifier{table}.Sanitize()); err != nil {
		b.fail("analyze %s: %v", table, err)
	}
}
