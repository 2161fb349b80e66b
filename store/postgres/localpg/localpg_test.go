package localpg

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestFreePorts checks that the ports are distinct, bindable, and below the
// kernel's ephemeral range, where an outgoing connection cannot take them.
func TestFreePorts(t *testing.T) {
	ports, err := FreePorts("127.0.0.1", 6)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralLow()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		if low > 11000 && p >= low {
			t.Errorf("port %d is in the ephemeral range (from %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		_ = l.Close()
	}
}

func start(t *testing.T, cfg Config) (*Server, error) {
	t.Helper()
	// The postgres user must reach Dir through its parents, and a
	// t.TempDir's parent is root's alone.
	dir, err := os.MkdirTemp("", "smq-localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cfg.Dir, cfg.Fast = dir, true
	s, err := Start(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { _ = s.Stop() })
	}
	return s, err
}

// isServer checks that s answers on its port, from its own directory.
func isServer(t *testing.T, s *Server) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var dir string
	if err := conn.QueryRow(context.Background(), "SHOW data_directory").Scan(&dir); err != nil {
		t.Fatal(err)
	}
	if dir != s.DataDir() {
		t.Fatalf("port %d answers from %s, not %s", s.Port(), dir, s.DataDir())
	}
}

// A port given and taken is an error that says so: whether a listener of
// another kind holds it, or another PostgreSQL, which would otherwise
// answer in this server's place.
func TestRefusesATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	other, err := start(t, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, port := range map[string]int{"listener": l.Addr().(*net.TCPAddr).Port, "postgres": other.Port()} {
		t.Run(name, func(t *testing.T) {
			_, err := start(t, Config{Port: port})
			if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
				t.Fatalf("got %v, want port %d taken", err, port)
			}
		})
	}
	isServer(t, other)
}

// A port picked and then taken before the server binds it is picked
// again.
func TestPicksAnotherPortWhenItsPortIsTaken(t *testing.T) {
	other, err := start(t, Config{})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	defer func(old func() (int, error)) { freePort = old }(freePort)
	freePort = func() (int, error) {
		if calls++; calls == 1 {
			return other.Port(), nil
		}
		return FreePort()
	}
	s, err := start(t, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || s.Port() == other.Port() {
		t.Fatalf("%d picks, port %d (the other's is %d)", calls, s.Port(), other.Port())
	}
	isServer(t, s)
	isServer(t, other)
}

// As root, a Dir the postgres user cannot reach (under a 0700 directory of
// root's, as a checkout under /root is) keeps its data in that user's home,
// behind a link at Dir/data that a later start follows to the same data. A
// Dir it can reach keeps a plain Dir/data.
func TestDataDirTheServerCannotReach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the server then runs as this user, who owns every directory it is given, so no directory is out of its reach (CI runs as root and runs this test)")
	}
	private, err := os.MkdirTemp("", "smq-localpg-private-") // mode 0700, root's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(private) })
	cfg := Config{Dir: filepath.Join(private, "pg"), Fast: true}
	ctx := context.Background()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start under a directory only root can search: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.DataDir()) })
	t.Cleanup(func() { _ = s.Stop() })
	isServer(t, s)

	_, home, err := postgresUser()
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(filepath.Join(cfg.Dir, "data"))
	if err != nil {
		t.Fatalf("Dir/data is not a link: %v", err)
	}
	if target != s.DataDir() || !strings.HasPrefix(target, filepath.Join(home, "smq")+string(filepath.Separator)) {
		t.Fatalf("Dir/data links to %s; the server's data is in %s, not under %s", target, s.DataDir(), home)
	}

	exec := func(s *Server, sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(s, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	again, err := Start(ctx, Config{Dir: cfg.Dir, Fast: true})
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	t.Cleanup(func() { _ = again.Stop() })
	if again.DataDir() != target {
		t.Fatalf("second start used %s, not %s", again.DataDir(), target)
	}
	isServer(t, again)
	exec(again, "DO $$ BEGIN IF (SELECT n FROM kept) IS DISTINCT FROM 42 THEN RAISE 'lost'; END IF; END $$")

	reachable, err := start(t, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(reachable.cfg.Dir, "data")); err != nil || !fi.IsDir() {
		t.Fatalf("a reachable Dir: Dir/data should be a directory: %v, %v", fi, err)
	}
}
