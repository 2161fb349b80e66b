package harness

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/smq/smq/store/postgres/localpg"
)

// TemporalServer is an embedded Temporal server (worker/devserver) running
// in a process of its own, with its state in a SQLite file in t.TempDir.
// Stopping or killing it makes Temporal unreachable for every node; Start
// brings it back on the same file and gRPC address, so workflows go on
// where they were.
type TemporalServer struct {
	addr    string
	dbFile  string
	logPath string

	mu     sync.Mutex // guards p and client
	p      *proc
	client client.Client
}

// Temporal starts an embedded Temporal server for t, stopped when t ends.
// It takes about a second (plus the binaries' build on first use). Tests
// that never stop Temporal can share one with SharedTemporal.
func Temporal(t testing.TB) *TemporalServer {
	t.Helper()
	s, err := newTemporal(t.TempDir())
	if err != nil {
		t.Fatalf("harness: temporal: %v", err)
	}
	var l logs
	l.add(t, "temporal", s.logPath)
	t.Cleanup(s.close)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("harness: temporal: %v", err)
	}
	return s
}

var (
	sharedOnce     sync.Once
	sharedTemporal *TemporalServer
	sharedDir      string
	sharedErr      error
)

// SharedTemporal returns the Temporal server shared by the tests of this
// process, started on first use and stopped by Main. Tests that share it
// must use regions (and node ids) of their own, since the workflow ids are
// made of them; and none may stop it.
func SharedTemporal(t testing.TB) *TemporalServer {
	t.Helper()
	sharedOnce.Do(func() {
		if sharedDir, sharedErr = os.MkdirTemp("", "smq-harness-temporal-"); sharedErr != nil {
			return
		}
		if sharedTemporal, sharedErr = newTemporal(sharedDir); sharedErr != nil {
			return
		}
		sharedErr = sharedTemporal.Start(context.Background())
	})
	if sharedErr != nil {
		t.Fatalf("harness: shared temporal: %v", sharedErr)
	}
	var l logs
	l.add(t, "shared temporal", sharedTemporal.logPath)
	return sharedTemporal
}

// stopShared stops the shared Temporal server, if it was started.
func stopShared() {
	if sharedTemporal != nil {
		sharedTemporal.close()
		_ = os.RemoveAll(sharedDir)
		sharedTemporal = nil
	}
}

func newTemporal(dir string) (*TemporalServer, error) {
	port, err := localpg.FreePort()
	if err != nil {
		return nil, err
	}
	return &TemporalServer{
		addr:    fmt.Sprintf("127.0.0.1:%d", port),
		dbFile:  filepath.Join(dir, "temporal.db"),
		logPath: filepath.Join(dir, "temporal.log"),
	}, nil
}

// close closes the client and kills the server.
func (s *TemporalServer) close() {
	s.mu.Lock()
	c := s.client
	s.client = nil
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
	s.Kill()
}

// Addr is the frontend's gRPC address, host:port (SMQ_TEMPORAL_ADDRESS).
func (s *TemporalServer) Addr() string { return s.addr }

// Namespace is the namespace the server serves.
func (s *TemporalServer) Namespace() string { return "default" }

// LogPath is the server's log file.
func (s *TemporalServer) LogPath() string { return s.logPath }

// Running reports whether the server's process runs.
func (s *TemporalServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p != nil && !s.p.exited()
}

// PID is the server process's id, or 0 when it does not run.
func (s *TemporalServer) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || s.p.exited() {
		return 0
	}
	return s.p.cmd.Process.Pid
}

// Start starts the server (again) on its file and address, and returns
// once it accepts connections. It is an error to start it while it runs.
func (s *TemporalServer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil && !s.p.exited() {
		return fmt.Errorf("temporal already running")
	}
	dir, err := buildAll()
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	bin := filepath.Join(dir, "temporald")
	// The port may linger for a moment after a kill; the start is retried.
	// So is a server that exits before it is ready, up to twice: one of the
	// ports it chose for its own services may have been bound by someone
	// else before it bound it, and it picks others on its next start.
	exits := 0
	for attempt := 0; attempt < 20; attempt++ {
		err = s.startOnce(ctx, bin)
		switch {
		case err == nil:
			return nil
		case strings.Contains(err.Error(), "is taken"):
		case errors.Is(err, errExited) && exits < 2:
			exits++
			log.Printf("harness: temporal exited before it was ready; starting it again: %v", err)
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}

func (s *TemporalServer) startOnce(ctx context.Context, bin string) error {
	before := fileSize(s.logPath)
	p, err := startProc(bin, []string{"--db-file", s.dbFile, "--grpc-addr", s.addr}, withoutEnv(os.Environ()), s.logPath)
	if err != nil {
		return err
	}
	s.p = p
	err = waitFor(ctx, 2*time.Minute, 20*time.Millisecond, func() (bool, error) {
		out := readFrom(s.logPath, before)
		if strings.Contains(out, "temporald ready") {
			return true, nil
		}
		if p.exited() {
			return false, fmt.Errorf("%w: %s", errExited, exitReason(out))
		}
		return false, nil
	})
	if err == nil {
		return nil
	}
	p.kill()
	s.p = nil
	return fmt.Errorf("start temporal on %s: %w", s.addr, err)
}

// Stop stops the server gracefully and waits for it to exit.
func (s *TemporalServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	err := s.p.stop(syscall.SIGTERM, 30*time.Second)
	s.p = nil
	return err
}

// Kill kills the server (SIGKILL) and waits for it to exit.
func (s *TemporalServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		s.p.kill()
		s.p = nil
	}
}

// Restart stops the server gracefully and starts it again, failing t if it
// does not come back.
func (s *TemporalServer) Restart(t testing.TB) {
	t.Helper()
	_ = s.Stop()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("harness: restart temporal: %v", err)
	}
}

// Client returns a Temporal SDK client of the server, made on first use and
// closed when the test ends. It is lazy: it survives the server's restarts.
func (s *TemporalServer) Client(t testing.TB) client.Client {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		c, err := client.NewLazyClient(client.Options{
			HostPort:  s.addr,
			Namespace: s.Namespace(),
			Logger:    tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		})
		if err != nil {
			t.Fatalf("harness: temporal client: %v", err)
		}
		s.client = c
	}
	return s.client
}

// Reachable reports whether something accepts TCP connections on the
// server's address.
func (s *TemporalServer) Reachable() bool {
	c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file's content from offset on.
func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
