package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/smq/smq/store/postgres/localpg"
	"github.com/smq/smq/worker/devserver"
)

// devCmd runs everything on one machine with no set-up: PostgreSQL from the
// system's binaries under .smq/pg (unless SMQ_DATABASE_URL names one), an
// embedded Temporal server (SQLite under .smq/) with its UI, and a node.
func devCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run SMQ on this machine with no set-up: local PostgreSQL, embedded Temporal and its UI, one node",
		Args:  cobra.NoArgs,
	}
	def := defaultConfig()
	def.DatabaseURL = "" // empty: start a local PostgreSQL under --data
	def.TemporalAddress = ""
	def.Migrate = true
	fs := cmd.Flags()
	addFlags(fs, def)
	data := fs.String("data", ".smq", "directory of the local PostgreSQL, Temporal's SQLite file and the WAL")
	pgPort := fs.Int("pg-port", 54329, "port of the local PostgreSQL")
	uiAddr := fs.String("temporal-ui-addr", "127.0.0.1:8233", "address of the Temporal UI (\"off\" disables it)")
	grpcAddr := fs.String("temporal-grpc-addr", "127.0.0.1:7233", "address of the embedded Temporal frontend")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		def.WALDir = filepath.Join(*data, "wal")
		cfg, err := loadConfig(fs, def)
		if err != nil {
			return err
		}
		log, flush := cfg.logger()
		defer flush()
		ctx, stop := signalContext()
		defer stop()

		if cfg.DatabaseURL == "" {
			pg, err := localpg.Start(ctx, localpg.Config{Dir: filepath.Join(*data, "pg"), Port: *pgPort})
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w (is another `smq dev` running? --pg-port picks another port)", err)
			}
			if err != nil {
				return err
			}
			defer pg.Stop() //nolint:errcheck
			if err := createDatabase(ctx, pg.URL("postgres"), "smq"); err != nil {
				return err
			}
			cfg.DatabaseURL = pg.URL("smq")
			log.Info("local postgresql running", "url", cfg.DatabaseURL, "dir", filepath.Join(*data, "pg"), "data", pg.DataDir())
		}
		if err := cfg.validate(); err != nil {
			return err
		}

		if cfg.TemporalAddress == "" {
			if err := os.MkdirAll(*data, 0o755); err != nil {
				return err
			}
			ts, err := devserver.Start(ctx, devserver.Config{DBFile: filepath.Join(*data, "temporal.db"),
				GRPCAddr: *grpcAddr, UIAddr: *uiAddr, Namespace: cfg.TemporalNamespace, Logger: log})
			if err != nil {
				return err
			}
			defer ts.Stop()
			cfg.TemporalAddress = ts.GRPCAddr()
			log.Info("embedded temporal running", "grpc", ts.GRPCAddr(), "ui", "http://"+ts.UIAddr())
		}

		return runNode(ctx, cfg, log, func(addr string) {
			fmt.Fprintf(cmd.ErrOrStderr(), "\nSMQ is running.\n  API:         http://%s\n  API docs:    http://%s/docs\n  Temporal UI: http://%s\n  PostgreSQL:  %s\n\n",
				hostPort(addr), hostPort(addr), *uiAddr, cfg.DatabaseURL)
		})
	}
	return cmd
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	}
	return err
}

// hostPort makes a listen address like "[::]:8080" clickable.
func hostPort(addr string) string {
	if len(addr) > 0 && (addr[0] == ':' || addr[0] == '[') {
		for i := len(addr) - 1; i >= 0; i-- {
			if addr[i] == ':' {
				return "localhost" + addr[i:]
			}
		}
	}
	return addr
}
