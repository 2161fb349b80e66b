// Package schema holds SMQ's SQL migrations, one numbered set per dialect,
// embedded in the binary and applied with goose (see store/postgres.Migrate).
package schema

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql cockroach/*.sql
var files embed.FS

// Dialects name the migration sets.
const (
	Postgres  = "postgres"
	Cockroach = "cockroach"
)

// FS returns the migrations of dialect (Postgres or Cockroach), numbered
// files with goose's "-- +goose Up" and "-- +goose Down" sections.
func FS(dialect string) (fs.FS, error) {
	return fs.Sub(files, dialect)
}
