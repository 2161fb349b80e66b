// Package pgtest gives each test a fresh, migrated PostgreSQL database.
//
// The server is the one at SMQ_TEST_DATABASE_URL (an admin URL; `make test`
// starts one for the whole run), or else a throwaway server this test
// process starts from the system's binaries on first use. Databases are
// copied from a migrated template (CREATE DATABASE … TEMPLATE), which takes
// milliseconds, and dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/smq/smq/schema"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/store/postgres/localpg"
)

var (
	once      sync.Once
	adminURL  string
	template  string
	setupErr  error
	started   *localpg.Server // the server this process started, if any
	startedIn string
	counter   atomic.Int64
)

// Run runs the tests, stops the server this process started, if any, and
// then, when the tests passed, fails the run if goroutines leaked (goleak):
// call it from TestMain as os.Exit(pgtest.Run(m)).
func Run(m *testing.M, leakOpts ...goleak.Option) int {
	code := m.Run()
	Stop()
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

// RunUnchecked is Run without the leak check, for the packages whose tests
// leave goroutines of a library behind (an embedded Temporal server, River):
// call it from TestMain as os.Exit(pgtest.RunUnchecked(m)).
func RunUnchecked(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop stops the server this process started, if any.
func Stop() {
	if started != nil {
		_ = started.Stop()
		_ = os.RemoveAll(startedIn)
		started = nil
	}
}

// AdminURL returns the URL of the server's postgres database, starting a
// throwaway server if SMQ_TEST_DATABASE_URL is unset.
func AdminURL(t testing.TB) string {
	t.Helper()
	setup()
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	return adminURL
}

func setup() {
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		adminURL = os.Getenv("SMQ_TEST_DATABASE_URL")
		if adminURL == "" {
			dir, err := os.MkdirTemp("", "smq-pgtest-")
			if err != nil {
				setupErr = err
				return
			}
			srv, err := localpg.Start(ctx, localpg.Config{Dir: dir, Fast: true})
			if err != nil {
				setupErr = err
				return
			}
			started, startedIn = srv, dir
			adminURL = srv.URL("postgres")
		}
		template, setupErr = ensureTemplate(ctx)
	})
}

// ensureTemplate creates, once per server and schema version, a migrated
// database to copy. Its name carries a hash of the migrations, so a
// long-lived server never serves a stale schema; an advisory lock keeps
// concurrent test processes from building it twice.
func ensureTemplate(ctx context.Context) (string, error) {
	name, err := templateName()
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", adminURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7351)`); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(7351)`) //nolint:errcheck
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+building); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return "", err
	}
	if _, err := postgres.Migrate(ctx, withDB(adminURL, building), schema.Postgres); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name); err != nil {
		return "", err
	}
	return name, nil
}

func templateName() (string, error) {
	fsys, err := schema.FS(schema.Postgres)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	err = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	return "smq_tpl_" + hex.EncodeToString(h.Sum(nil))[:12], err
}

// URL returns the URL of a fresh migrated database, dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	AdminURL(t)
	name := fmt.Sprintf("smq_t_%d_%d", os.Getpid(), counter.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	// Copying a template fails while anyone else is connected to it, which
	// a concurrent copy briefly is; retry a little.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+template)
		if err == nil || attempt == 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return withDB(adminURL, name)
}

func withDB(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}
