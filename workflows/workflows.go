// Package workflows holds SMQ's Temporal workflows: one scheduler and one
// janitor per region, one flush per node. Each is a loop that runs one long
// activity at a time (see package activities), adds up what it did, shows
// that in its memo and in the "stats" query, and continues as new every few
// iterations so that its history stays short.
//
// Workflow code is deterministic: it reads time only through workflow.Now,
// waits only through workflow timers and futures, and ranges over no map.
package workflows

import (
	"cmp"
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/smq/smq/activities"
)

// Names of the workflows as registered with a worker.
const (
	SchedulerName = "Scheduler"
	JanitorName   = "Janitor"
	FlushName     = "Flush"
)

// StatsQuery is the query every workflow answers with its Stats.
const StatsQuery = "stats"

// ErrTypeInvalidInput is the non-retryable error type of a workflow started
// with an input it cannot run, such as an empty region.
const ErrTypeInvalidInput = "smq.InvalidInput"

// Defaults of the workflows' inputs.
const (
	// DefaultRunFor is how long one activity run loops.
	DefaultRunFor = 5 * time.Minute
	// DefaultIterations is how many activity runs a workflow makes before
	// it continues as new: about eight events each, so a few hundred events
	// per history.
	DefaultIterations = 50
	// DefaultErrorPause is the pause after an activity run that failed for
	// good (a non-retryable error), before the next one.
	DefaultErrorPause = time.Minute
	// HeartbeatTimeout is how long an activity may go without a heartbeat
	// before Temporal deems its node dead and runs it on another: well
	// within the 30 s a failover may take.
	HeartbeatTimeout = 10 * time.Second
	// MaxRetryInterval caps the backoff between attempts of a failing
	// activity run.
	MaxRetryInterval = 10 * time.Second
)

// RegionTaskQueue returns the task queue of a region's scheduler and
// janitor: "smq/<region>".
func RegionTaskQueue(region string) string { return "smq/" + region }

// NodeTaskQueue returns the task queue of a node's flush:
// "smq/<region>/<node>". Only that node polls it, since only it can read its
// buffer.
func NodeTaskQueue(region, node string) string { return "smq/" + region + "/" + node }

// SchedulerID returns the workflow id of a region's scheduler.
func SchedulerID(region string) string { return "smq-scheduler/" + region }

// JanitorID returns the workflow id of a region's janitor.
func JanitorID(region string) string { return "smq-janitor/" + region }

// FlushID returns the workflow id of a node's flush.
func FlushID(region, node string) string { return "smq-flush/" + region + "/" + node }

// Loop tunes a workflow's loop. Zero fields take the defaults.
type Loop struct {
	// RunFor is how long one activity run loops. Defaults to
	// DefaultRunFor.
	RunFor time.Duration `json:"run_for,omitempty"`
	// Iterations is how many activity runs the workflow makes before it
	// continues as new. Defaults to DefaultIterations.
	Iterations int `json:"iterations,omitempty"`
	// ErrorPause is the pause after a run that failed for good. Defaults to
	// DefaultErrorPause.
	ErrorPause time.Duration `json:"error_pause,omitempty"`
}

func (l Loop) withDefaults() Loop {
	l.RunFor = cmp.Or(l.RunFor, DefaultRunFor)
	l.Iterations = cmp.Or(l.Iterations, DefaultIterations)
	l.ErrorPause = cmp.Or(l.ErrorPause, DefaultErrorPause)
	return l
}

// Stats is what a workflow's loop did since it first started, across
// continue-as-new: the answer to the "stats" query, and its memo.
type Stats struct {
	Region string `json:"region"`
	Node   string `json:"node,omitempty"`
	// Since is when the loop first started.
	Since time.Time `json:"since"`
	// Generation counts the continue-as-new since then.
	Generation int `json:"generation"`
	// Runs counts the activity runs that ended.
	Runs int64 `json:"runs"`
	// LastRunAt is when the last run ended.
	LastRunAt time.Time `json:"last_run_at"`
	// LastRun is how long the last run lasted.
	LastRun time.Duration `json:"last_run"`
	// Promoted counts messages the scheduler made ready.
	Promoted int64 `json:"promoted,omitempty"`
	// MaxLateness is the longest a message waited past its scheduled time
	// before the scheduler made it ready, over the last run.
	MaxLateness time.Duration `json:"max_lateness,omitempty"`
	// Retried counts expired leases the janitor put back.
	Retried int64 `json:"retried,omitempty"`
	// DeadLettered counts messages the janitor dead-lettered.
	DeadLettered int64 `json:"dead_lettered,omitempty"`
	// StaleNodes counts nodes the janitor marked stale.
	StaleNodes int64 `json:"stale_nodes,omitempty"`
	// Flushed counts messages the flush wrote to the database.
	Flushed int64 `json:"flushed,omitempty"`
	// Errors counts errors the loop met: those its runs went on after, and
	// runs that failed.
	Errors int64 `json:"errors"`
	// LastError is the last of them, empty when none.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when it happened.
	LastErrorAt time.Time `json:"last_error_at"`
}

// addRun adds the counts every run reports.
func (s *Stats) addRun(r activities.RunStats) {
	s.Runs++
	s.LastRunAt = r.EndedAt
	s.LastRun = r.EndedAt.Sub(r.StartedAt)
	s.Errors += r.Errors
	if r.LastError != "" {
		s.LastError = r.LastError
		s.LastErrorAt = r.LastErrorAt
	}
}

// failed records a run that failed for good.
func (s *Stats) failed(at time.Time, err error) {
	s.Errors++
	s.LastError = err.Error()
	s.LastErrorAt = at
}

// memo is what the Temporal UI shows of the stats. Its keys are few and
// flat, so that the UI's memo view reads at a glance.
func (s *Stats) memo(kind string) map[string]any {
	m := map[string]any{
		"region":      s.Region,
		"runs":        s.Runs,
		"last_run_at": s.LastRunAt,
		"errors":      s.Errors,
		"last_error":  s.LastError,
	}
	switch kind {
	case SchedulerName:
		m["promoted"] = s.Promoted
		m["max_lateness"] = s.MaxLateness.String()
	case JanitorName:
		m["retried"] = s.Retried
		m["dead_lettered"] = s.DeadLettered
		m["stale_nodes"] = s.StaleNodes
	case FlushName:
		m["node"] = s.Node
		m["flushed"] = s.Flushed
	}
	return m
}

// loop runs the workflow's activity over and over: run, add up, show, and
// after lp.Iterations runs (or when Temporal suggests it), continue as new
// through next. A run that fails for good is recorded and, after a pause,
// followed by the next one: a loop of SMQ never stops on its own.
func loop(ctx workflow.Context, kind string, lp Loop, st *Stats, run func(workflow.Context, *Stats) error, next func(Stats) error) error {
	if st.Since.IsZero() {
		st.Since = workflow.Now(ctx)
	}
	if err := workflow.SetQueryHandler(ctx, StatsQuery, func() (Stats, error) { return *st, nil }); err != nil {
		return err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: lp.RunFor + 2*time.Minute,
		HeartbeatTimeout:    HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    MaxRetryInterval,
			MaximumAttempts:    0,
			NonRetryableErrorTypes: []string{
				activities.ErrTypeInvalidInput,
				activities.ErrTypeNotConfigured,
				activities.ErrTypeWrongNode,
			},
		},
	})
	for i := 0; i < lp.Iterations; i++ {
		if err := run(ctx, st); err != nil {
			if errors.Is(ctx.Err(), workflow.ErrCanceled) || temporal.IsCanceledError(err) {
				return err
			}
			st.failed(workflow.Now(ctx), err)
			workflow.GetLogger(ctx).Error("activity run failed", "error", err)
			if err := workflow.UpsertMemo(ctx, st.memo(kind)); err != nil {
				return err
			}
			if err := workflow.Sleep(ctx, lp.ErrorPause); err != nil {
				return err
			}
			continue
		}
		if err := workflow.UpsertMemo(ctx, st.memo(kind)); err != nil {
			return err
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			break
		}
	}
	st.Generation++
	return next(*st)
}

// SchedulerInput starts a region's scheduler.
type SchedulerInput struct {
	// Region is the region whose messages the scheduler promotes.
	Region string `json:"region"`
	// Loop tunes the workflow's loop.
	Loop Loop `json:"loop"`
	// Stats carries the counts across continue-as-new; leave it empty.
	Stats Stats `json:"stats"`
}

// Scheduler is a region's scheduler: it runs activities.Schedule, which
// makes due messages ready, one run after another.
func Scheduler(ctx workflow.Context, in SchedulerInput) error {
	if in.Region == "" {
		return temporal.NewNonRetryableApplicationError("scheduler: region is required", ErrTypeInvalidInput, nil)
	}
	lp := in.Loop.withDefaults()
	st := in.Stats
	st.Region = in.Region
	var a *activities.Activities
	run := func(ctx workflow.Context, st *Stats) error {
		var res activities.ScheduleResult
		err := workflow.ExecuteActivity(ctx, a.Schedule, activities.ScheduleInput{Region: in.Region, RunFor: lp.RunFor}).Get(ctx, &res)
		if err != nil {
			return err
		}
		st.addRun(res.RunStats)
		st.Promoted += res.Promoted
		st.MaxLateness = res.MaxLateness
		return nil
	}
	return loop(ctx, SchedulerName, lp, &st, run, func(st Stats) error {
		return workflow.NewContinueAsNewError(ctx, Scheduler, SchedulerInput{Region: in.Region, Loop: in.Loop, Stats: st})
	})
}

// JanitorInput starts a region's janitor.
type JanitorInput struct {
	// Region is the region whose expired leases the janitor recovers.
	Region string `json:"region"`
	// Loop tunes the workflow's loop.
	Loop Loop `json:"loop"`
	// Stats carries the counts across continue-as-new; leave it empty.
	Stats Stats `json:"stats"`
}

// Janitor is a region's janitor: it runs activities.Sweep, which recovers
// expired leases and marks silent nodes stale, one run after another.
func Janitor(ctx workflow.Context, in JanitorInput) error {
	if in.Region == "" {
		return temporal.NewNonRetryableApplicationError("janitor: region is required", ErrTypeInvalidInput, nil)
	}
	lp := in.Loop.withDefaults()
	st := in.Stats
	st.Region = in.Region
	var a *activities.Activities
	run := func(ctx workflow.Context, st *Stats) error {
		var res activities.SweepResult
		err := workflow.ExecuteActivity(ctx, a.Sweep, activities.SweepInput{Region: in.Region, RunFor: lp.RunFor}).Get(ctx, &res)
		if err != nil {
			return err
		}
		st.addRun(res.RunStats)
		st.Retried += res.Retried
		st.DeadLettered += res.DeadLettered
		st.StaleNodes += res.StaleNodes
		return nil
	}
	return loop(ctx, JanitorName, lp, &st, run, func(st Stats) error {
		return workflow.NewContinueAsNewError(ctx, Janitor, JanitorInput{Region: in.Region, Loop: in.Loop, Stats: st})
	})
}

// FlushInput starts a node's flush.
type FlushInput struct {
	// Region and Node name the node whose buffer the flush writes to the
	// database; its activities run on NodeTaskQueue(Region, Node).
	Region string `json:"region"`
	Node   string `json:"node"`
	// Loop tunes the workflow's loop.
	Loop Loop `json:"loop"`
	// Stats carries the counts across continue-as-new; leave it empty.
	Stats Stats `json:"stats"`
}

// Flush is a node's flush: it runs activities.Flush on the node's own task
// queue, one run after another.
func Flush(ctx workflow.Context, in FlushInput) error {
	if in.Region == "" || in.Node == "" {
		return temporal.NewNonRetryableApplicationError("flush: region and node are required", ErrTypeInvalidInput, nil)
	}
	lp := in.Loop.withDefaults()
	st := in.Stats
	st.Region, st.Node = in.Region, in.Node
	var a *activities.Activities
	run := func(ctx workflow.Context, st *Stats) error {
		ctx = workflow.WithTaskQueue(ctx, NodeTaskQueue(in.Region, in.Node))
		var res activities.FlushResult
		err := workflow.ExecuteActivity(ctx, a.Flush, activities.FlushInput{Region: in.Region, Node: in.Node, RunFor: lp.RunFor}).Get(ctx, &res)
		if err != nil {
			return err
		}
		st.addRun(res.RunStats)
		st.Flushed += res.Flushed
		return nil
	}
	return loop(ctx, FlushName, lp, &st, run, func(st Stats) error {
		return workflow.NewContinueAsNewError(ctx, Flush, FlushInput{Region: in.Region, Node: in.Node, Loop: in.Loop, Stats: st})
	})
}
