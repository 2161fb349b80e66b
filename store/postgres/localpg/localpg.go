// Package localpg runs a throwaway PostgreSQL server from the system's
// binaries (initdb, postgres), for `smq dev`, the tests and the benchmarks.
//
// PostgreSQL refuses to run as root, so when this process is root the server
// runs as the "postgres" OS user and its directory is handed to that user.
// That user must be able to reach the data directory through its parents;
// where it cannot (a checkout under /root, whose mode is 0700), the data
// directory is made in the postgres user's home instead, and Dir/data
// links to it.
// The server is a child of this process and gets SIGINT (a fast shutdown)
// if this process dies, so a crashed test leaves no server behind.
package localpg

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config says where and how to run the server.
type Config struct {
	// Dir holds the data directory (Dir/data) and the server log
	// (Dir/postgres.log). It is created, and initialized on first use.
	Dir string
	// Port is the TCP port on 127.0.0.1. Defaults to a free port.
	Port int
	// Fast turns off fsync and synchronous commit: for tests, where a crash
	// of the machine loses nothing of value. Benchmarks and `smq dev` keep
	// PostgreSQL's durable defaults.
	Fast bool
	// MaxConnections is max_connections. Defaults to 300.
	MaxConnections int
	// StatStatements preloads pg_stat_statements, so that a benchmark can
	// say which statements took the server's time. Each database that reads
	// it must CREATE EXTENSION pg_stat_statements.
	StatStatements bool
}

// Server is a running (or stopped) local PostgreSQL.
type Server struct {
	cfg  Config
	cred *syscall.Credential // nil when not root
	home string              // the postgres user's home, when root
	data string              // the data directory, set by initdb

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start initializes cfg.Dir if needed and starts the server, returning once
// it accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localpg: Dir is required")
	}
	cfg.MaxConnections = cmp.Or(cfg.MaxConnections, 300)
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	s := &Server{cfg: cfg}
	if os.Geteuid() == 0 {
		if s.cred, s.home, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	// A port found free can be taken by another process before the server
	// binds it; a port picked here is then picked again.
	pick := cfg.Port == 0
	for attempt := 1; ; attempt++ {
		if pick {
			if s.cfg.Port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err := s.Start(ctx)
		if err == nil {
			return s, nil
		}
		if !pick || !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			return nil, err
		}
	}
}

// freePort picks the port of a server started without one; a test
// replaces it.
var freePort = FreePort

// postgresUser returns the credential the server runs with when this
// process is root (the postgres user's uid and primary gid, and no other
// group), and that user's home.
func postgresUser() (*syscall.Credential, string, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, "", fmt.Errorf("localpg: running as root needs the postgres OS user (install PostgreSQL's server package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, u.HomeDir, nil
}

// Binary finds one of PostgreSQL's server programs: on PATH, or in the
// newest /usr/lib/postgresql/*/bin.
func Binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		return "", fmt.Errorf("localpg: %s not found: install PostgreSQL's server package (Debian: postgresql)", name)
	}
	return matches[len(matches)-1], nil
}

func (s *Server) command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	bin, err := Binary(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT, Setpgid: true}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	return cmd, nil
}

// DataDir is the server's data directory: Dir/data, or where that links to
// (see the package's doc).
func (s *Server) DataDir() string { return s.data }

func (s *Server) logPath() string { return filepath.Join(s.cfg.Dir, "postgres.log") }

func (s *Server) initdb(ctx context.Context) error {
	// The postgres user must be able to reach Dir through its parents.
	if err := os.MkdirAll(filepath.Dir(s.cfg.Dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(s.cfg.Dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	if s.cred != nil {
		if err := os.Chown(s.cfg.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return err
		}
	}
	if err := s.placeData(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.DataDir(), "PG_VERSION")); err == nil {
		return nil
	}
	cmd, err := s.command(ctx, "initdb", "-D", s.DataDir(), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions")
	if err != nil {
		return err
	}
	cmd.SysProcAttr.Pdeathsig = 0
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("localpg: initdb: %w: %s", err, out)
	}
	return nil
}

// placeData sets s.data: Dir/data, unless this process is root and the
// postgres user cannot reach Dir. Then the data directory is
// <home>/smq/pg-<hash of Dir>, and Dir/data a link to it, made once and
// followed on every later start.
func (s *Server) placeData() error {
	link := filepath.Join(s.cfg.Dir, "data")
	s.data = link
	if s.cred == nil {
		return nil
	}
	if target, err := os.Readlink(link); err == nil {
		if !filepath.IsAbs(target) {
			target = filepath.Join(s.cfg.Dir, target)
		}
		s.data = target
		return nil
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		return err // a directory (nil) or an error
	}
	blocked, err := s.blockedAt(s.cfg.Dir)
	if err != nil || blocked == "" {
		return err
	}
	base := filepath.Join(s.home, "smq")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("localpg: the postgres user cannot reach %s (no search permission on %s), and making a directory in its home failed: %w", s.cfg.Dir, blocked, err)
	}
	if err := os.Chown(base, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return err
	}
	if b, err := s.blockedAt(base); err != nil || b != "" {
		return cmp.Or(err, fmt.Errorf("localpg: the postgres user can reach neither %s (no search permission on %s) nor %s (none on %s)", s.cfg.Dir, blocked, base, b))
	}
	sum := sha256.Sum256([]byte(s.cfg.Dir))
	target := filepath.Join(base, "pg-"+hex.EncodeToString(sum[:8]))
	if err := os.Symlink(target, link); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	s.data = target
	return nil
}

// blockedAt returns the deepest directory on the way to dir (dir included)
// that the postgres user may not search, or "" when it can reach dir. It
// reads the mode bits as the kernel does for a process with that user's uid
// and primary gid alone, as the server runs (ACLs aside).
func (s *Server) blockedAt(dir string) (string, error) {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", nil // cannot tell: let initdb try
		}
		bit := fs.FileMode(0o001)
		switch {
		case st.Uid == s.cred.Uid:
			bit = 0o100
		case st.Gid == s.cred.Gid:
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			return p, nil
		}
		if p == filepath.Dir(p) {
			return "", nil
		}
	}
}

// Start starts a stopped server again, on the same directory and port.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("localpg: already running")
	}
	args := []string{"-D", s.DataDir(), "-p", strconv.Itoa(s.cfg.Port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", "-c", "max_connections=" + strconv.Itoa(s.cfg.MaxConnections)}
	if s.cfg.StatStatements {
		args = append(args, "-c", "shared_preload_libraries=pg_stat_statements")
	}
	if s.cfg.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	// The server must outlive ctx, which only bounds the start.
	cmd, err := s.command(context.Background(), "postgres", args...)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		logFile.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("localpg: start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	if err := s.waitReady(ctx, done, logStart); err != nil {
		s.stopLocked()
		return err
	}
	return nil
}

// waitReady waits until the server accepts connections, and checks that
// the server that does is this one: when another holds the port, this one
// exits, and a connection reaches the other.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}, logStart int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, s.URL("postgres"))
		if err == nil {
			var dir string
			err = conn.QueryRow(cctx, "SELECT current_setting('data_directory')").Scan(&dir)
			_ = conn.Close(ctx)
			cancel()
			switch {
			case err != nil:
				return fmt.Errorf("localpg: %w", err)
			case dir != s.DataDir():
				return fmt.Errorf("localpg: port %d is taken, by the server of %s: %w", s.cfg.Port, dir, syscall.EADDRINUSE)
			}
			return nil
		}
		cancel()
		select {
		case <-exited:
			log, _ := os.ReadFile(s.logPath())
			if int64(len(log)) >= logStart && bytes.Contains(log[logStart:], []byte("could not bind")) {
				return fmt.Errorf("localpg: port %d is taken: %w", s.cfg.Port, syscall.EADDRINUSE)
			}
			return fmt.Errorf("localpg: postgres exited at start; see %s", s.logPath())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localpg: postgres did not accept connections within a minute: %w", err)
		}
	}
}

// Stop shuts the server down fast (aborting open transactions) and waits
// for it to exit.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
	return nil
}

// Port is the server's TCP port.
func (s *Server) Port() int { return s.cfg.Port }

// URL is the connection URL of database db.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.cfg.Port, db)
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now
// (see FreePorts).
func FreePort() (int, error) {
	ports, err := FreePorts("127.0.0.1", 1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct TCP ports of ip that nothing listens on now,
// for servers that bind them a moment later. They are taken below the
// kernel's range of ephemeral ports (ip_local_port_range), where no
// outgoing connection can take one in that moment: a port the kernel hands
// a port-0 listener comes from that range, and once the listener closes any
// connect() may be given it (an embedded Temporal server, which binds its
// ports a second or two after choosing them, then failed to start). Where
// the range cannot be read, or leaves too little room below it, the kernel
// picks.
func FreePorts(ip string, n int) ([]int, error) {
	const lowest = 10000
	top := ephemeralLow()
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for tries := 0; top-lowest >= 1000 && len(listeners) < n && tries < 100*n; tries++ {
		port := lowest + rand.IntN(top-lowest)
		if l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port))); err == nil {
			listeners = append(listeners, l)
		}
	}
	for len(listeners) < n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		listeners = append(listeners, l)
	}
	ports := make([]int, n)
	for i, l := range listeners {
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// ephemeralLow is the lowest port the kernel gives outgoing connections,
// or 0 when it cannot tell.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0
	}
	return lo
}
