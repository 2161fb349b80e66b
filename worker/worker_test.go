package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/store/postgres/localpg"
	"github.com/smq/smq/test/pgtest"
	"github.com/smq/smq/worker/devserver"
	"github.com/smq/smq/workflows"
)

// TestMain runs without pgtest.Run's leak check: the Temporal server these
// tests embed leaves goroutines of its own behind when it stops.
func TestMain(m *testing.M) { os.Exit(pgtest.RunUnchecked(m)) }

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SMQ_TEST_DEBUG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// freeAddr is a loopback address below the kernel's range for outgoing
// connections (see localpg.FreePorts): the node dials it while Temporal is
// down, and a dial to a port in that range can take the port itself.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := localpg.FreePort()
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func startTemporal(t *testing.T, addr string) *devserver.Server {
	t.Helper()
	s, err := devserver.Start(context.Background(), devserver.Config{GRPCAddr: addr, UIAddr: devserver.UIOff, Logger: testLogger(t)})
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	return s
}

func openStore(t *testing.T, url, region string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, postgres.Options{Region: region, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// killable is a store that a test can cut off, as a node's crash would.
type killable struct {
	store.Store
	dead atomic.Bool
}

var errKilled = fmt.Errorf("%w: node killed", store.ErrUnavailable)

func (k *killable) MessagePromote(ctx context.Context, p *store.MessagePromoteParams) (*store.Promoted, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	return k.Store.MessagePromote(ctx, p)
}

func (k *killable) MessageRecover(ctx context.Context, p *store.MessageRecoverParams) (*store.Recovered, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	return k.Store.MessageRecover(ctx, p)
}

func (k *killable) NodeHeartbeat(ctx context.Context, n *store.Node) error {
	if k.dead.Load() {
		return errKilled
	}
	return k.Store.NodeHeartbeat(ctx, n)
}

// fakeFlusher counts its runs; it flushes nothing.
type fakeFlusher struct {
	running atomic.Int32
	runs    atomic.Int32
	mu      sync.Mutex // serializes Run, as the buffer's Flusher does
}

func (f *fakeFlusher) Run(ctx context.Context, progress func(store.FlushStats)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running.Add(1)
	defer f.running.Add(-1)
	f.runs.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeFlusher) Stats() store.FlushStats { return store.FlushStats{} }

// node is one SMQ node of a test.
type node struct {
	w        *Worker
	store    *killable
	flusher  *fakeFlusher
	promoted atomic.Int64
	// lateness holds each promoted message's lateness; guarded by mu.
	mu       sync.Mutex
	lateness []time.Duration
	// logs holds what the worker logged at INFO and above, the SDK's
	// lines included.
	logs lockedBuffer
}

// lockedBuffer is a bytes.Buffer for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newNode(t *testing.T, temporalAddr string, db *postgres.Store, region, id string) *node {
	t.Helper()
	n := &node{store: &killable{Store: db}, flusher: &fakeFlusher{}}
	acts := &activities.Activities{
		Store: n.store, Notifier: db, Flusher: n.flusher, Region: region, Node: id, Logger: testLogger(t),
		OnPromoted: func(p store.Promoted) {
			n.promoted.Add(int64(p.Count))
			n.mu.Lock()
			n.lateness = append(n.lateness, p.Lateness...)
			n.mu.Unlock()
		},
	}
	logger := slog.New(slog.NewMultiHandler(testLogger(t).Handler(), slog.NewTextHandler(&n.logs, nil)))
	w, err := New(Config{
		HostPort: temporalAddr, Region: region, Node: id, Activities: acts, Logger: logger,
		HeartbeatInterval: 200 * time.Millisecond, HealthInterval: 200 * time.Millisecond, StopTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	n.w = w
	return n
}

func (n *node) start(t *testing.T) {
	t.Helper()
	require.NoError(t, n.w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.w.Stop(ctx)
	})
}

func (n *node) running(loop string) bool { return n.w.Status().Loops[loop].Running }

func (n *node) lastLateness() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lateness[len(n.lateness)-1]
}

func insert(t *testing.T, db store.Store, region string, at time.Time) uuid.UUID {
	t.Helper()
	m := &store.Message{ID: uuid.Must(uuid.NewV7()), Channel: "jobs", Payload: []byte(`{}`), ScheduledAt: at, MaxAttempts: 3, Region: region}
	res, err := db.MessageInsertMany(context.Background(), &store.MessageInsertManyParams{Messages: []*store.Message{m}})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	return m.ID
}

func TestWorkerRunsTheLoopsAndStopsGracefully(t *testing.T) {
	ts := startTemporal(t, "127.0.0.1:0")
	db := openStore(t, pgtest.URL(t), "eu")
	n := newNode(t, ts.GRPCAddr(), db, "eu", "n1")
	n.start(t)

	require.Eventually(t, func() bool {
		return n.running(activities.LoopScheduler) && n.running(activities.LoopJanitor) && n.running(activities.LoopFlush)
	}, 30*time.Second, 10*time.Millisecond)
	// The node flushed in-process until the flush activity reached it, and
	// hands over at its next check.
	require.Eventually(t, func() bool { return !n.w.Status().FlushFallback }, 10*time.Second, 10*time.Millisecond)
	st := n.w.Status()
	require.True(t, st.TemporalReachable)
	require.True(t, st.WorkersStarted)
	h, reason := st.Health(time.Now())
	require.Equal(t, Healthy, h, reason)

	due := time.Now().Add(500 * time.Millisecond)
	insert(t, db, "eu", due)
	require.Eventually(t, func() bool { return n.promoted.Load() == 1 }, 10*time.Second, time.Millisecond)
	t.Logf("promoted %v after its due time", n.lastLateness())

	nodes, err := db.NodeList(context.Background(), 10, 0)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	require.Equal(t, "n1", nodes[0].ID)
	require.Equal(t, store.NodeActive, nodes[0].Status)

	// A second start of the same workflows joins the running ones.
	require.NoError(t, n.w.startWorkflows(context.Background()))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	before := len(n.logs.String())
	require.NoError(t, n.w.Stop(ctx))
	t.Logf("graceful stop took %v", time.Since(began))
	time.Sleep(200 * time.Millisecond) // what the SDK's goroutines log on their way out
	for line := range strings.Lines(n.logs.String()[before:]) {
		require.NotRegexp(t, `level=(WARN|ERROR)`, line, "the worker complained while it stopped")
	}
	require.False(t, n.running(activities.LoopScheduler))
	require.False(t, n.running(activities.LoopFlush))
	nodes, err = db.NodeList(context.Background(), 10, 0)
	require.NoError(t, err)
	require.Empty(t, nodes, "a stopped node deregisters")
}

func TestWorkerQueriesWorkflowStats(t *testing.T) {
	ts := startTemporal(t, "127.0.0.1:0")
	db := openStore(t, pgtest.URL(t), "eu")
	n := newNode(t, ts.GRPCAddr(), db, "eu", "n1")
	n.w.cfg.Loop = workflows.Loop{RunFor: time.Second}
	n.start(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		st, err := n.w.Query(ctx, workflows.SchedulerID("eu"))
		return err == nil && st.Runs >= 1
	}, 30*time.Second, 50*time.Millisecond)
	st, err := n.w.Query(ctx, workflows.FlushID("eu", "n1"))
	require.NoError(t, err)
	require.Equal(t, "n1", st.Node)
}

func TestWorkerStartsWithoutTemporalAndFlushesItself(t *testing.T) {
	addr := freeAddr(t)
	db := openStore(t, pgtest.URL(t), "eu")
	n := newNode(t, addr, db, "eu", "n1")
	n.start(t)

	// Temporal is down: the node still registers, and flushes in-process.
	require.Eventually(t, func() bool { return n.w.Status().FlushFallback && n.flusher.running.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	st := n.w.Status()
	require.False(t, st.TemporalReachable)
	h, reason := st.Health(time.Now())
	require.Equal(t, Degraded, h)
	require.Contains(t, reason, "temporal unreachable: ")
	require.Eventually(t, func() bool { return !n.w.Status().NodeHeartbeat.IsZero() }, 10*time.Second, 5*time.Millisecond)

	// Temporal comes up: the flush goes back to its workflow.
	startTemporal(t, addr)
	require.Eventually(t, func() bool {
		st := n.w.Status()
		return st.TemporalReachable && !st.FlushFallback && n.running(activities.LoopFlush) && n.running(activities.LoopScheduler)
	}, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return n.flusher.running.Load() == 1 && n.flusher.runs.Load() >= 2 }, 10*time.Second, 5*time.Millisecond)
}

func TestSchedulerFailsOverWhenItsNodeDies(t *testing.T) {
	ts := startTemporal(t, "127.0.0.1:0")
	url := pgtest.URL(t)
	dbA, dbB := openStore(t, url, "eu"), openStore(t, url, "eu")
	a := newNode(t, ts.GRPCAddr(), dbA, "eu", "a")
	b := newNode(t, ts.GRPCAddr(), dbB, "eu", "b")
	a.start(t)
	b.start(t)

	var owner, other *node
	require.Eventually(t, func() bool {
		switch {
		case a.running(activities.LoopScheduler):
			owner, other = a, b
		case b.running(activities.LoopScheduler):
			owner, other = b, a
		}
		return owner != nil
	}, 30*time.Second, 10*time.Millisecond)
	require.False(t, other.running(activities.LoopScheduler), "two schedulers at once")
	t.Logf("scheduler on %s", owner.w.cfg.Node)

	// Kill the owner: its database is cut off and its client closed, with
	// no graceful stop.
	owner.store.dead.Store(true)
	sdk := owner.w.abort()
	t.Cleanup(func() {
		for _, s := range sdk {
			s.Stop()
		}
	})
	killed := time.Now()
	due := killed.Add(2 * time.Second)
	insert(t, dbB, "eu", due)

	require.Eventually(t, func() bool { return other.running(activities.LoopScheduler) }, 30*time.Second, 10*time.Millisecond)
	took := time.Since(killed)
	t.Logf("scheduler resumed on %s %v after the kill", other.w.cfg.Node, took)
	require.Less(t, took, 30*time.Second)

	// The message that fell due during the failover is promoted, and the
	// next ones on time.
	require.Eventually(t, func() bool { return other.promoted.Load() == 1 }, 10*time.Second, time.Millisecond)
	due = time.Now().Add(500 * time.Millisecond)
	insert(t, dbB, "eu", due)
	require.Eventually(t, func() bool { return other.promoted.Load() == 2 }, 10*time.Second, time.Millisecond)
	t.Logf("after the failover, promoted %v after its due time", other.lastLateness())
	require.Less(t, other.lastLateness(), 100*time.Millisecond)
	require.Zero(t, owner.promoted.Load())

	// The janitor sees the dead node go stale.
	require.Eventually(t, func() bool { return other.running(activities.LoopJanitor) }, 30*time.Second, 10*time.Millisecond)
}

func TestHealth(t *testing.T) {
	now := time.Now()
	ok := Status{TemporalReachable: true, TemporalCheckedAt: now, WorkersStarted: true,
		Loops: map[string]activities.LoopStatus{activities.LoopFlush: {Running: true, LastHeartbeat: now}}}
	h, reason := ok.Health(now)
	require.Equal(t, Healthy, h, reason)

	down := ok
	down.TemporalReachable, down.TemporalError, down.FlushFallback = false, "connection refused", true
	h, reason = down.Health(now)
	require.Equal(t, Degraded, h)
	require.Equal(t, "temporal unreachable: connection refused (flushing in-process)", reason)

	stuck := ok
	stuck.Loops = map[string]activities.LoopStatus{activities.LoopFlush: {Running: true, LastHeartbeat: now.Add(-time.Minute)}}
	h, reason = stuck.Health(now)
	require.Equal(t, Degraded, h)
	require.Equal(t, "flush stuck: no heartbeat for 1m0s", reason)

	_, reason = Status{}.Health(now)
	require.Equal(t, "temporal: not checked yet", reason)
}

func TestConfigNamesTheMissingField(t *testing.T) {
	_, err := New(Config{Node: "n1", Activities: &activities.Activities{}})
	require.ErrorContains(t, err, "Region")
	_, err = New(Config{Region: "eu", Node: "n1", Activities: &activities.Activities{}})
	require.ErrorContains(t, err, "Store")
	_, err = New(Config{Region: "eu", Node: "n1", Activities: &activities.Activities{Region: "us"}, Store: &killable{}})
	require.ErrorContains(t, err, "Activities.Region")
}
