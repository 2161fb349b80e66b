// Package worker is SMQ's node runtime for Temporal: it runs the Temporal
// workers of the node's region and of the node itself, starts the region's
// scheduler and janitor and the node's flush (idempotently: every node does
// it at boot), keeps the node's heartbeat in the database, and keeps the
// node's buffer flowing into the database when Temporal cannot be reached.
//
// A node starts and serves without Temporal: the client connects lazily,
// and everything that needs Temporal is retried in the background.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/store"
	"github.com/smq/smq/workflows"
)

// Config configures a Worker.
type Config struct {
	// HostPort is the Temporal frontend's address. Defaults to
	// "127.0.0.1:7233".
	HostPort string
	// Namespace is the Temporal namespace. Defaults to "default".
	Namespace string
	// Region is the node's region. Required.
	Region string
	// Node is the node's id, unique in the cluster. Required.
	Node string
	// Version is the node's software version, as it registers itself.
	// Defaults to "dev".
	Version string
	// Activities are what this node's Temporal workers run. Required.
	Activities *activities.Activities
	// Store receives the node's heartbeat. Defaults to Activities.Store.
	Store store.Store
	// Logger receives the worker's log and the Temporal SDK's, from INFO
	// up. Defaults to discarding it.
	Logger *slog.Logger
	// HeartbeatInterval is how often the node refreshes its heartbeat in
	// the database. Defaults to 5 seconds.
	HeartbeatInterval time.Duration
	// HealthInterval is how often the worker checks that Temporal answers,
	// and retries what failed while it did not. Defaults to 2 seconds.
	HealthInterval time.Duration
	// EnsureInterval is how often the worker starts the workflows again
	// (joining them when they run), so that one an operator terminated comes
	// back. Defaults to 1 minute.
	EnsureInterval time.Duration
	// StopTimeout is how long a graceful stop gives running activities to
	// return their counts. Defaults to 10 seconds.
	StopTimeout time.Duration
	// Loop tunes the workflows this node starts (when it is the first to
	// start them). Defaults to the workflows package's defaults.
	Loop workflows.Loop
	// DisableFlushFallback keeps the worker from flushing the buffer itself
	// while Temporal is unreachable. Defaults to false.
	DisableFlushFallback bool
	// ClientOptions, when set, is the base of the Temporal client's options;
	// HostPort, Namespace, Logger and Identity are filled in if empty.
	ClientOptions *client.Options
}

// WithDefaults returns the config with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.HostPort = cmp.Or(c.HostPort, "127.0.0.1:7233")
	c.Namespace = cmp.Or(c.Namespace, "default")
	c.Version = cmp.Or(c.Version, "dev")
	if c.Store == nil && c.Activities != nil {
		c.Store = c.Activities.Store
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, 5*time.Second)
	c.HealthInterval = cmp.Or(c.HealthInterval, 2*time.Second)
	c.EnsureInterval = cmp.Or(c.EnsureInterval, time.Minute)
	c.StopTimeout = cmp.Or(c.StopTimeout, 10*time.Second)
	return c
}

func (c Config) validate() error {
	switch {
	case c.Region == "":
		return errors.New("worker: Region is required")
	case c.Node == "":
		return errors.New("worker: Node is required")
	case c.Activities == nil:
		return errors.New("worker: Activities is required")
	case c.Store == nil:
		return errors.New("worker: Store (or Activities.Store) is required")
	case c.Activities.Region != "" && c.Activities.Region != c.Region:
		return fmt.Errorf("worker: Activities.Region %q differs from Region %q", c.Activities.Region, c.Region)
	case c.Activities.Node != "" && c.Activities.Node != c.Node:
		return fmt.Errorf("worker: Activities.Node %q differs from Node %q", c.Activities.Node, c.Node)
	}
	return nil
}

// Worker is one node's Temporal runtime. Build it with New, then Start and
// Stop it once each.
type Worker struct {
	cfg       Config
	log       *slog.Logger
	client    client.Client
	startedAt time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup // the background loops
	// stopping is set when Stop begins; the SDK's logger reads it.
	stopping atomic.Bool

	// mu guards the fields below.
	mu               sync.Mutex
	sdk              []sdkworker.Worker
	reachable        bool
	checkedAt        time.Time
	checkErr         string
	workflowsAt      time.Time
	workflowsErr     string
	fallbackCancel   context.CancelFunc
	fallbackDone     chan struct{}
	fallbackSince    time.Time
	heartbeatAt      time.Time
	heartbeatErr     string
	started, stopped bool
}

// New returns a Worker for cfg. It connects to nothing yet: the Temporal
// client is lazy, so New succeeds while Temporal is down.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Activities.Region == "" {
		cfg.Activities.Region = cfg.Region
	}
	if cfg.Activities.Node == "" {
		cfg.Activities.Node = cfg.Node
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.With("region", cfg.Region, "node", cfg.Node)}
	var opts client.Options
	if cfg.ClientOptions != nil {
		opts = *cfg.ClientOptions
	}
	opts.HostPort = cmp.Or(opts.HostPort, cfg.HostPort)
	opts.Namespace = cmp.Or(opts.Namespace, cfg.Namespace)
	opts.Identity = cmp.Or(opts.Identity, workflows.NodeTaskQueue(cfg.Region, cfg.Node))
	if opts.Logger == nil {
		// The SDK's own default prints DEBUG lines.
		opts.Logger = tlog.NewStructuredLogger(slog.New(sdkHandler{slog.LevelInfo, &w.stopping, cfg.Logger.Handler()}).With("component", "temporal"))
	}
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("worker: temporal client: %w", err)
	}
	w.client = c
	return w, nil
}

// Client returns the Temporal client, for queries of the workflows.
func (w *Worker) Client() client.Client { return w.client }

// Start starts the node heartbeat and, in the background, the Temporal
// workers and workflows, retried until Temporal answers. It returns at once.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("worker: started twice")
	}
	w.started = true
	w.startedAt = time.Now()
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		w.heartbeatLoop(ctx)
	}()
	go func() {
		defer w.wg.Done()
		w.temporalLoop(ctx)
	}()
	return nil
}

// Stop stops the worker gracefully: running activities are told to return
// their counts (within StopTimeout), the node deregisters itself from the
// database, and the client closes. If ctx ends first, Stop returns ctx's
// error and leaves the rest to finish in the background.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if !w.started || w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	sdk := w.sdk
	w.sdk = nil
	w.mu.Unlock()
	w.stopping.Store(true)

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.cancel()
		var wg sync.WaitGroup
		for _, s := range sdk {
			wg.Go(s.Stop)
		}
		wg.Wait()
		w.wg.Wait()
		w.client.Close()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("worker: stop: %w", ctx.Err())
	}
	if err := w.cfg.Store.NodeDelete(ctx, w.cfg.Node); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("worker: deregister node: %w", err)
	}
	return nil
}

// heartbeatLoop registers the node and refreshes its heartbeat, whatever
// Temporal's state.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	n := &store.Node{ID: w.cfg.Node, Region: w.cfg.Region, Version: w.cfg.Version, StartedAt: w.startedAt}
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		n.LastHeartbeat = time.Now()
		err := w.cfg.Store.NodeHeartbeat(ctx, n)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		if err != nil {
			w.heartbeatErr = err.Error()
		} else {
			w.heartbeatAt, w.heartbeatErr = n.LastHeartbeat, ""
		}
		w.mu.Unlock()
		switch {
		case err != nil && !failing:
			w.log.Warn("node heartbeat failed", "error", err)
		case err == nil && failing:
			w.log.Info("node heartbeat back")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// temporalLoop checks on Temporal every HealthInterval: it starts the
// workers and the workflows once Temporal answers, starts the workflows
// again every EnsureInterval, and flushes the buffer in-process while the
// flush activity does not run here.
func (w *Worker) temporalLoop(ctx context.Context) {
	defer w.stopFallback()
	t := time.NewTicker(w.cfg.HealthInterval)
	defer t.Stop()
	for {
		err := w.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = w.startWorkers()
			if err == nil {
				w.ensureWorkflows(ctx)
			}
		}
		// The flush workflow's activity may be minutes away even with
		// Temporal up: after a kill -9 the dead attempt holds it until its
		// heartbeat times out. Until the activity runs here, the node
		// flushes its own buffer, which only it can read.
		if err != nil || !w.cfg.Activities.Status()[activities.LoopFlush].Running {
			w.startFallback(ctx)
		} else {
			w.stopFallback()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check asks Temporal whether it is up, and records the answer.
func (w *Worker) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, max(w.cfg.HealthInterval, time.Second))
	defer cancel()
	_, err := w.client.CheckHealth(cctx, &client.CheckHealthRequest{})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.reachable || w.checkedAt.IsZero()
	w.reachable, w.checkedAt = err == nil, time.Now()
	if err != nil {
		w.checkErr = err.Error()
		if was {
			w.log.Warn("temporal unreachable", "host_port", w.cfg.HostPort, "error", err)
		}
		return err
	}
	if !was {
		w.log.Info("temporal reachable again", "host_port", w.cfg.HostPort)
	}
	w.checkErr = ""
	return nil
}

// startWorkers starts the region's and the node's Temporal workers, once.
func (w *Worker) startWorkers() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sdk) > 0 || w.stopped {
		return nil
	}
	opts := sdkworker.Options{WorkerStopTimeout: w.cfg.StopTimeout}
	acts := w.cfg.Activities

	region := sdkworker.New(w.client, workflows.RegionTaskQueue(w.cfg.Region), opts)
	region.RegisterWorkflowWithOptions(workflows.Scheduler, workflow.RegisterOptions{Name: workflows.SchedulerName})
	region.RegisterWorkflowWithOptions(workflows.Janitor, workflow.RegisterOptions{Name: workflows.JanitorName})
	region.RegisterActivity(acts.Schedule)
	region.RegisterActivity(acts.Sweep)

	node := sdkworker.New(w.client, workflows.NodeTaskQueue(w.cfg.Region, w.cfg.Node), opts)
	node.RegisterWorkflowWithOptions(workflows.Flush, workflow.RegisterOptions{Name: workflows.FlushName})
	node.RegisterActivity(acts.Flush)

	// A worker whose Start failed cannot start again (the SDK memoizes the
	// result), so a failure drops both and the next check makes new ones.
	if err := region.Start(); err != nil {
		region.Stop()
		return fmt.Errorf("start region worker: %w", err)
	}
	if err := node.Start(); err != nil {
		region.Stop()
		node.Stop()
		return fmt.Errorf("start node worker: %w", err)
	}
	w.sdk = []sdkworker.Worker{region, node}
	w.log.Info("temporal workers started", "region_queue", workflows.RegionTaskQueue(w.cfg.Region), "node_queue", workflows.NodeTaskQueue(w.cfg.Region, w.cfg.Node))
	return nil
}

// ensureWorkflows starts the region's scheduler and janitor and the node's
// flush, joining those that run already, when they were last started more
// than EnsureInterval ago (or never).
func (w *Worker) ensureWorkflows(ctx context.Context) {
	w.mu.Lock()
	due := w.workflowsAt.IsZero() || time.Since(w.workflowsAt) >= w.cfg.EnsureInterval
	w.mu.Unlock()
	if !due {
		return
	}
	err := w.startWorkflows(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.workflowsErr = err.Error()
		w.log.Warn("starting workflows failed; retrying", "error", err)
		return
	}
	if w.workflowsAt.IsZero() {
		w.log.Info("workflows started", "scheduler", workflows.SchedulerID(w.cfg.Region), "janitor", workflows.JanitorID(w.cfg.Region), "flush", workflows.FlushID(w.cfg.Region, w.cfg.Node))
	}
	w.workflowsAt, w.workflowsErr = time.Now(), ""
}

func (w *Worker) startWorkflows(ctx context.Context) error {
	r, n := w.cfg.Region, w.cfg.Node
	start := func(id, queue string, fn, in any) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := w.client.ExecuteWorkflow(cctx, client.StartWorkflowOptions{
			ID:                       id,
			TaskQueue:                queue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		}, fn, in)
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		return nil
	}
	return errors.Join(
		start(workflows.SchedulerID(r), workflows.RegionTaskQueue(r), workflows.Scheduler, workflows.SchedulerInput{Region: r, Loop: w.cfg.Loop}),
		start(workflows.JanitorID(r), workflows.RegionTaskQueue(r), workflows.Janitor, workflows.JanitorInput{Region: r, Loop: w.cfg.Loop}),
		start(workflows.FlushID(r, n), workflows.NodeTaskQueue(r, n), workflows.Flush, workflows.FlushInput{Region: r, Node: n, Loop: w.cfg.Loop}),
	)
}

// startFallback flushes the buffer in-process while the flush activity does
// not run here (Temporal is unreachable, or the activity has not reached
// this node yet): only this node can read its buffer, so nobody else would.
func (w *Worker) startFallback(ctx context.Context) {
	f := w.cfg.Activities.Flusher
	if f == nil || w.cfg.DisableFlushFallback {
		return
	}
	if w.cfg.Activities.Status()[activities.LoopFlush].Running {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fallbackCancel != nil || w.stopped {
		return
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.fallbackCancel, w.fallbackDone, w.fallbackSince = cancel, done, time.Now()
	w.log.Info("flush activity not running here: flushing the buffer in-process")
	go func() {
		defer close(done)
		// Runs are serialized by the flusher: should the flush activity
		// start meanwhile, it waits for this one to end.
		if err := f.Run(fctx, nil); err != nil && fctx.Err() == nil {
			w.log.Error("in-process flush stopped", "error", err)
		}
	}()
}

// stopFallback ends the in-process flush, if it runs, and waits for it.
func (w *Worker) stopFallback() {
	w.mu.Lock()
	cancel, done := w.fallbackCancel, w.fallbackDone
	w.fallbackCancel, w.fallbackDone = nil, nil
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	w.log.Info("in-process flush handed back to the flush workflow")
}

// sdkHandler is the SDK's log handler: lines below min are dropped, and
// so, once the worker stops, is the SDK's failure to send a heartbeat.
// The SDK holds back heartbeats that come close together and sends the
// last when the worker stops, on the context of an activity that has
// returned by then. It logs that the context was canceled; nothing is lost,
// for the activity returned the same counts as its result.
type sdkHandler struct {
	min      slog.Level
	stopping *atomic.Bool
	slog.Handler
}

// sdkHeartbeatFailed is the SDK's message for a heartbeat it could not send.
const sdkHeartbeatFailed = "RecordActivityHeartbeat with error"

func (h sdkHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h sdkHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == sdkHeartbeatFailed && h.stopping.Load() {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h sdkHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return sdkHandler{h.min, h.stopping, h.Handler.WithAttrs(attrs)}
}

func (h sdkHandler) WithGroup(name string) slog.Handler {
	return sdkHandler{h.min, h.stopping, h.Handler.WithGroup(name)}
}

// abort stops the worker as a crash would, for the failover test: its loops
// end and its client closes under its Temporal workers, which are neither
// stopped nor drained, and the node stays registered. It returns the
// Temporal workers, for the test to stop at its end.
func (w *Worker) abort() []sdkworker.Worker {
	w.mu.Lock()
	w.stopped = true
	sdk := w.sdk
	w.sdk = nil
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
	w.client.Close()
	return sdk
}
