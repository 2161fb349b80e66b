package localpg

import (
	"context"
	"errors"
	"net"
	"os"
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
	if dir != s.dataDir() {
		t.Fatalf("port %d answers from %s, not %s", s.Port(), dir, s.dataDir())
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
