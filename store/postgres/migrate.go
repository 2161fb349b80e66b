package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/smq/smq/schema"
)

// Migrate applies the embedded migrations of dialect ("" detects it) to the
// database at url and returns the schema version reached. It is idempotent:
// applied versions are recorded in goose_db_version. On PostgreSQL an
// advisory lock keeps nodes that start together from migrating twice.
func Migrate(ctx context.Context, url, dialect string) (int64, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return 0, fmt.Errorf("parse database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if dialect == "" {
		var version string
		if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
			return 0, fmt.Errorf("detect dialect: %w", mapErr(err))
		}
		dialect = schema.Postgres
		if strings.Contains(version, "CockroachDB") {
			dialect = schema.Cockroach
		}
	}
	return migrateDB(ctx, db, dialect)
}

func migrateDB(ctx context.Context, db *sql.DB, dialect string) (int64, error) {
	fsys, err := schema.FS(dialect)
	if err != nil {
		return 0, err
	}
	var opts []goose.ProviderOption
	if dialect == schema.Postgres {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return 0, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", mapErr(err))
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}
