package bench

import (
	"sync"
	"time"
)

// Systems as the results name them.
const (
	sysSMQWAL     = "SMQ (WAL)"
	sysSMQWALStd  = "SMQ (WAL), net/http client"
	sysSMQMemory  = "SMQ (memory)"
	sysRiver      = "River"
	sysRiverDef   = "River (defaults)"
	sysRiverTuned = "River (tuned)"
	sysPGQ        = "hand-written queue"
	sysInsert     = "plain INSERT"
)

// results is every figure of a run, filled by the workloads (each writes
// its own fields) and rendered by report.go once the run ends.
type results struct {
	mu sync.Mutex // guards everything below

	// createLatency (workload 1): one client, sequential creates.
	createLatency map[string]summary
	// throughput (workload 2): system → concurrency → figures.
	throughput map[string]map[int]tput
	// bulk (workload 3): system (with batch size) → figures.
	bulk map[string]bulkResult
	// lateness (workload 4): system → figures.
	lateness map[string]latenessResult
	// drain (workload 5): system → figures.
	drain map[string]drainResult
	// scale (workload 6): filler rows → figures.
	scale map[int]scaleResult
	// steady (workload 7): system → figures.
	steady map[string]steadyResult
	// loopback: operation → latency, one client: the raw client's, and
	// net/http's (loopbackStd).
	loopback    map[string]summary
	loopbackStd map[string]summary
	// idle: SMQ's transactions per second against PostgreSQL when idle.
	idle *idleResult
	// profiles: CPU profiles of the smq process, by workload.
	profiles []profile
	// steps: the machine's state during each step.
	steps []stepCondition
	// notes: things the run noticed that a reader should know.
	notes []string
}

func newResults() *results {
	return &results{
		createLatency: map[string]summary{},
		throughput:    map[string]map[int]tput{},
		bulk:          map[string]bulkResult{},
		lateness:      map[string]latenessResult{},
		drain:         map[string]drainResult{},
		scale:         map[int]scaleResult{},
		steady:        map[string]steadyResult{},
		loopback:      map[string]summary{},
		loopbackStd:   map[string]summary{},
	}
}

func (r *results) note(s string) {
	r.mu.Lock()
	r.notes = append(r.notes, s)
	r.mu.Unlock()
}

type tput struct {
	Ops     int
	Elapsed time.Duration
	Rate    float64
	Latency summary
	Errors  int // 429s and failures, retried or not counted
	CPU     cpuSplit
	// PerSync is how many creates shared each of the WAL's fsyncs (its
	// smq_wal_syncs_total) in the timed window; 0 where there is no WAL.
	PerSync float64
	// SyncMean is the mean time of those group writes, Badger's commit and
	// the fsync (smq_wal_sync_seconds_total over smq_wal_syncs_total).
	SyncMean time.Duration
}

type bulkResult struct {
	Rows    int
	Batch   int
	Elapsed time.Duration // until the rows were in the database
	Rate    float64
	Ack     time.Duration // until the last batch was acknowledged
	Errors  int
	CPU     cpuSplit
}

type latenessResult struct {
	Spread, Burst latenessRun
	// Bound is how long after a run's last due time receipts were awaited.
	Bound    time.Duration
	Settings string
}

// latenessRun is one run of workload 4 (the spread or the burst).
type latenessRun struct {
	Late summary
	// AllReceived is the time from the first due time to the last receipt.
	AllReceived   time.Duration
	AllReceivedOK bool
	// Ready is the time from the first due time until every message was
	// pollable (SMQ: out of PENDING); measured for SMQ only.
	Ready   time.Duration
	ReadyOK bool
	// ReadyP50 and ReadyP99 come from SMQ's own scheduler histogram (due
	// to READY), as bucket bounds.
	ReadyP50, ReadyP99 string
	Settings           string
	// CPU is measured from the first due time to the last receipt (or
	// the bound).
	CPU cpuSplit
}

type drainResult struct {
	Consumers int
	Target    int
	Done      int
	Elapsed   time.Duration
	Rate      float64
	Settings  string
	CPU       cpuSplit
}

type scaleResult struct {
	Filler   int
	Lateness summary
	Poll     summary
	Promote  time.Duration // a burst of scaleBurst made pollable
	FillTime time.Duration
}

type steadyResult struct {
	Rate        int
	Duration    time.Duration
	Sent        int
	Received    int
	EndToEnd    summary
	Create      summary
	CPUQueue    time.Duration // the queue's own process (smq; River: the bench process, load included)
	CPUPostgres time.Duration
	RSS, RSSMax int64
	Settings    string
	CPU         cpuSplit
}

type idleResult struct {
	Window  time.Duration
	Xacts   int64
	PerSec  float64
	Details string
	// Statements are those PostgreSQL logged for SMQ's database over
	// StatementWindow, right after the count.
	Statements      []statementCount
	StatementWindow time.Duration
}

type statementCount struct {
	Statement string
	Count     int
}

type profile struct {
	Name    string // workload it was taken in
	Seconds int
	Path    string
	Top     string // `go tool pprof -top` output, trimmed
	Cum     string // the first lines of `-top -cum` in smq, pgx and Badger
	Areas   []profileArea
	// Statements are the busiest statements of SMQ's database over the
	// same seconds.
	Statements []pgStatement
}

// pgStatement is one normalized statement's share of PostgreSQL's time
// (pg_stat_statements).
type pgStatement struct {
	Query   string
	Calls   int64
	Rows    int64
	TotalMs float64 // wall time in the server: waiting for a core or a lock counts
}

// profileArea is one part of smq and its cumulative share of a profile.
type profileArea struct {
	Label string
	Share string
}

// stepCondition is the machine's state during one step of the run.
type stepCondition struct {
	Name  string
	Took  time.Duration
	Fsync time.Duration // median 8 KiB write + fdatasync just before
	Speed float64       // MB/s of sha256 on one core just before (cpuProbe)
	RTT   time.Duration // median loopback TCP round trip just before (rttProbe)
	Load  string        // 1-minute load average just before
	CPU   cpuSplit
}
