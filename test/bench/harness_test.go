package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smq/smq/store/postgres/localpg"
)

// Databases on the one PostgreSQL of a run: each system gets its own, so
// that resetting one never touches another and the idle check can count
// SMQ's transactions alone.
const (
	dbSMQ   = "smq"
	dbRiver = "river"
	dbPGQ   = "pgq"
)

// bench is what every workload shares: the PostgreSQL of the run, the smq
// binary, pools on each database and the results being gathered.
type bench struct {
	t       *testing.T
	ctx     context.Context
	dir     string // scratch: PostgreSQL's data, smq's data and logs, profiles
	outDir  string // test/bench: results.md, results.svg
	pg      *localpg.Server
	smqBin  string
	admin   *pgxpool.Pool // the postgres database: pg_stat_database, CREATE DATABASE
	smqDB   *pgxpool.Pool
	riverDB *pgxpool.Pool
	pgqDB   *pgxpool.Pool
	res     *results
	pgss    bool           // pg_stat_statements is readable in the smq database
	only    *regexp.Regexp // steps to run; nil: all
	node    *smqNode       // the SMQ node running now, if any
}

// startPostgres starts the run's PostgreSQL with durable settings (fsync,
// synchronous commit and full-page writes on: PostgreSQL's defaults), and
// pg_stat_statements loaded, for the statements behind a profiled workload.
func (b *bench) startPostgres() {
	pg, err := localpg.Start(b.ctx, localpg.Config{Dir: filepath.Join(b.dir, "pg"), Fast: false, StatStatements: true})
	if err != nil {
		b.t.Fatalf("start postgresql: %v", err)
	}
	b.pg = pg
	b.t.Cleanup(func() { _ = pg.Stop() })
	b.admin = b.pool("postgres", 4)
	for _, name := range []string{dbSMQ, dbRiver, dbPGQ} {
		if _, err := b.admin.Exec(b.ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
			b.t.Fatalf("create database %s: %v", name, err)
		}
	}
	// Pools big enough that the load generator's concurrency (up to 64),
	// not the pool, bounds the peers.
	b.smqDB = b.pool(dbSMQ, 16)
	b.riverDB = b.pool(dbRiver, 80)
	b.pgqDB = b.pool(dbPGQ, 80)
	if _, err := b.smqDB.Exec(b.ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		b.res.note(fmt.Sprintf("pg_stat_statements is not available (%v): the profiles show smq's CPU only", err))
	} else {
		b.pgss = true
	}
}

func (b *bench) pool(db string, maxConns int) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(b.pg.URL(db))
	if err != nil {
		b.t.Fatal(err)
	}
	cfg.MaxConns = int32(maxConns)
	p, err := pgxpool.NewWithConfig(b.ctx, cfg)
	if err != nil {
		b.t.Fatalf("pool on %s: %v", db, err)
	}
	b.t.Cleanup(p.Close)
	return p
}

// moduleDir is the root of the smq module.
func moduleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// buildSMQ builds the real smq binary with one file added through an
// overlay (testdata/pprof.go.txt): a net/http/pprof listener on
// $BENCH_PPROF_ADDR, so a workload can take a CPU profile of the real
// process. Nothing else differs from `go build ./cmd/smq`.
func (b *bench) buildSMQ() {
	root, err := moduleDir()
	if err != nil {
		b.fail("%v", err)
	}
	overlay := map[string]map[string]string{"Replace": {
		filepath.Join(root, "cmd", "smq", "zz_bench_pprof.go"): filepath.Join(root, "test", "bench", "testdata", "pprof.go.txt"),
	}}
	ov, _ := json.Marshal(overlay)
	ovPath := filepath.Join(b.dir, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		b.fail("%v", err)
	}
	b.smqBin = filepath.Join(b.dir, "smq")
	start := time.Now()
	cmd := exec.Command("go", "build", "-overlay", ovPath, "-o", b.smqBin, "./cmd/smq")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.fail("go build ./cmd/smq: %v\n%s", err, out)
	}
	b.t.Logf("built smq in %s", time.Since(start).Round(time.Millisecond))
}

// smqNode is a running `smq dev` process pointed at the run's PostgreSQL.
type smqNode struct {
	b         *bench
	mode      string // wal or memory
	cmd       *exec.Cmd
	done      chan struct{}
	base      string // http://127.0.0.1:port
	pprofAddr string
	logPath   string
	client    *smqClient
}

func (b *bench) freeAddr() string {
	port, err := localpg.FreePort()
	if err != nil {
		b.fail("free port: %v", err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// startSMQ runs `smq dev` in the given buffer mode (wal or memory) on free
// ports, with its data (WAL, Temporal's SQLite) in a fresh directory, and
// returns once /readyz answers 200.
func (b *bench) startSMQ(mode string) *smqNode {
	t := b.t
	if b.smqBin == "" {
		b.fail("no smq binary")
	}
	data := filepath.Join(b.dir, "smq-"+mode+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.MkdirAll(data, 0o755); err != nil {
		b.fail("%v", err)
	}
	httpAddr := b.freeAddr()
	n := &smqNode{b: b, mode: mode, base: "http://" + httpAddr, pprofAddr: b.freeAddr(),
		logPath: filepath.Join(data, "smq.log"), done: make(chan struct{})}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		b.fail("%v", err)
	}
	n.cmd = exec.Command(b.smqBin, "dev", "--data", data, "--http-addr", httpAddr,
		"--temporal-grpc-addr", b.freeAddr(), "--temporal-ui-addr", "off", "--buffer", mode)
	n.cmd.Env = append(childEnv(), "SMQ_DATABASE_URL="+b.pg.URL(dbSMQ), "BENCH_PPROF_ADDR="+n.pprofAddr)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		b.fail("start smq: %v", err)
	}
	go func() {
		_ = n.cmd.Wait()
		logFile.Close()
		close(n.done)
	}()
	t.Cleanup(n.stop)
	b.node = n
	n.client = newSMQClient(n.base)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if code, _ := n.client.status(b.ctx, "/readyz"); code == http.StatusOK {
			break
		}
		select {
		case <-n.done:
			b.fail("smq dev exited at start; its log:\n%s", tail(n.logPath, 40))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.fail("smq dev not ready within 90 s; its log:\n%s", tail(n.logPath, 40))
		}
	}
	t.Logf("smq dev (%s) ready at %s, pid %d", mode, n.base, n.pid())
	return n
}

// childEnv is this process's environment without SMQ_* variables: smq
// refuses settings it does not know (SMQ_BENCH among them).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SMQ_") {
			env = append(env, kv)
		}
	}
	return env
}

func (n *smqNode) pid() int { return n.cmd.Process.Pid }

// stop sends SIGTERM (a graceful stop: the buffer is flushed) and waits.
func (n *smqNode) stop() {
	if n.b.node == n {
		n.b.node = nil
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(40 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// procTimes reads utime+stime and, for the children it has waited for,
// cutime+cstime, of a process.
func procTimes(pid int) (self, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; fields after it start at ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
	ticks := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i-3], 10, 64)
		return time.Duration(v) * time.Second / clockTick
	}
	return ticks(14) + ticks(15), ticks(16) + ticks(17), nil
}

// procCPU is a process's CPU time so far (user and system).
func procCPU(pid int) time.Duration {
	self, _, _ := procTimes(pid)
	return self
}

// postgresCPU is the CPU time of the whole PostgreSQL server: the
// postmaster, its live children, and the children that already exited.
func (b *bench) postgresCPU() time.Duration {
	pidFile, err := os.ReadFile(filepath.Join(b.dir, "pg", "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	master, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
	self, reaped, err := procTimes(master)
	if err != nil {
		return 0
	}
	total := self + reaped
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != master {
			continue
		}
		total += procCPU(pid)
	}
	return total
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procRSS is a process's resident set size, and its peak (VmHWM), in bytes.
func procRSS(pid int) (rss, peak int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

// waitFor polls cond every interval until it holds or the timeout passes.
func waitFor(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// count runs a count(*) query.
func count(ctx context.Context, db *pgxpool.Pool, sql string, args ...any) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

// xacts is the number of transactions committed or rolled back in a
// database so far, as pg_stat_database reports them.
func (b *bench) xacts(db string) (int64, error) {
	return count(b.ctx, b.admin, `SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database WHERE datname = $1`, db)
}

// cpuSplit is CPU time by process group over a stretch of wall time: the
// smq process, PostgreSQL, this process (the load generator, and River
// when River runs), and everything else on the machine (other users of
// these cores).
type cpuSplit struct {
	SMQ, Postgres, Bench, Other time.Duration
	Wall                        time.Duration
	machine                     time.Duration
	at                          time.Time
}

// cpuNow reads the counters, with the SMQ node that runs now, if any.
func (b *bench) cpuNow() cpuSplit {
	s := cpuSplit{Postgres: b.postgresCPU(), Bench: procCPU(os.Getpid()), machine: machineBusy(), at: time.Now()}
	if b.node != nil {
		s.SMQ = procCPU(b.node.pid())
	}
	return s
}

// cpuSince is the CPU used from an earlier reading to now.
func (b *bench) cpuSince(from cpuSplit) cpuSplit {
	to := b.cpuNow()
	c := cpuSplit{SMQ: to.SMQ - from.SMQ, Postgres: to.Postgres - from.Postgres, Bench: to.Bench - from.Bench, Wall: to.at.Sub(from.at)}
	if to.SMQ < from.SMQ { // another node started in between
		c.SMQ = 0
	}
	c.Other = max(to.machine-from.machine-c.SMQ-c.Postgres-c.Bench, 0)
	return c
}

// machineBusy is the CPU time all processes on the machine used so far:
// every field of /proc/stat's cpu line but idle and iowait.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTick
}

// String gives the split in cores (CPU seconds per second).
func (c cpuSplit) String() string {
	if c.Wall <= 0 {
		return "–"
	}
	cores := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()/c.Wall.Seconds()) }
	return "smq " + cores(c.SMQ) + ", pg " + cores(c.Postgres) + ", bench " + cores(c.Bench) + ", other " + cores(c.Other)
}

// fsyncProbe times 8 KiB writes each followed by fdatasync in dir, the
// cost every durable commit pays, and returns the median.
func fsyncProbe(dir string) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 8<<10)
	var d dist
	for range 50 {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, 0); err != nil {
			return 0
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0
		}
		d.add(time.Since(t0))
	}
	p50, _ := d.pct(50)
	return p50
}

// cpuProbe is how fast one core runs: MB/s of sha256 over 4 MiB, the best
// of five. The host slows down and speeds up through the day (the same
// workload took up to twice as long an hour later, with nothing else
// running); this is one way to tell runs apart.
func cpuProbe() float64 {
	buf := make([]byte, 4<<20)
	best := time.Duration(math.MaxInt64)
	for range 5 {
		t0 := time.Now()
		sha256.Sum256(buf)
		best = min(best, time.Since(t0))
	}
	return float64(len(buf)) / 1e6 / best.Seconds()
}

// rttProbe is the median round trip of one byte over a loopback TCP
// connection, the kernel's share of every HTTP request and database query
// here. It slowed down by more than the cores did: in one day GET /livez
// went from 0.13 to 0.26 ms p50, sha256 on one core from 1,455 to no less
// than 1,218 MB/s.
func rttProbe() time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0
	}
	defer c.Close()
	buf := make([]byte, 1)
	var d dist
	for range 2000 {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return 0
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0
		}
		d.add(time.Since(t0))
	}
	p50, _ := d.pct(50)
	return p50
}

// loadAvg is the first field of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
