package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/workflows"
)

// Status is what this node knows of its Temporal side, for the health API.
type Status struct {
	// TemporalReachable is true when the last health check of Temporal
	// succeeded; TemporalCheckedAt is when it ended (zero before the first)
	// and TemporalError its error, empty on success.
	TemporalReachable bool
	TemporalCheckedAt time.Time
	TemporalError     string
	// WorkersStarted is true once this node's Temporal workers run.
	WorkersStarted bool
	// WorkflowsStartedAt is when the workflows were last started (or
	// joined); WorkflowsError is the last failure to, empty after a success.
	WorkflowsStartedAt time.Time
	WorkflowsError     string
	// Loops is what this node saw of each loop's activity, keyed by
	// activities.LoopScheduler, LoopJanitor and LoopFlush; a loop that never
	// ran here is missing. The region's scheduler and janitor run on one
	// node of the region at a time, maybe another one.
	Loops map[string]activities.LoopStatus
	// FlushFallback is true while the node flushes its buffer in-process
	// because the flush activity does not run here (Temporal unreachable,
	// or the activity not arrived yet); FlushFallbackSince says since when.
	FlushFallback      bool
	FlushFallbackSince time.Time
	// NodeHeartbeat is when the node's heartbeat last reached the database;
	// NodeHeartbeatError is the last failure, empty after a success.
	NodeHeartbeat      time.Time
	NodeHeartbeatError string
	// StartedAt is when the worker started.
	StartedAt time.Time
}

// Status reports the worker's state.
func (w *Worker) Status() Status {
	loops := w.cfg.Activities.Status()
	w.mu.Lock()
	defer w.mu.Unlock()
	return Status{
		TemporalReachable:  w.reachable,
		TemporalCheckedAt:  w.checkedAt,
		TemporalError:      w.checkErr,
		WorkersStarted:     len(w.sdk) > 0,
		WorkflowsStartedAt: w.workflowsAt,
		WorkflowsError:     w.workflowsErr,
		Loops:              loops,
		FlushFallback:      w.fallbackCancel != nil,
		FlushFallbackSince: w.fallbackSince,
		NodeHeartbeat:      w.heartbeatAt,
		NodeHeartbeatError: w.heartbeatErr,
		StartedAt:          w.startedAt,
	}
}

// Health is a verdict on the node's background layers.
type Health string

// The verdicts.
const (
	// Healthy: Temporal answers and this node's loops heartbeat.
	Healthy Health = "healthy"
	// Degraded: ingest and consumption go on, but a background layer is
	// impaired (Temporal unreachable, the flush stuck, the node's heartbeat
	// failing).
	Degraded Health = "degraded"
)

// StuckAfter is how long a loop that runs on this node may go without a
// heartbeat before Health calls it stuck.
const StuckAfter = 30 * time.Second

// Health judges s at now, and gives the reason for anything but Healthy,
// naming the layer ("temporal unreachable: …").
func (s Status) Health(now time.Time) (Health, string) {
	switch {
	case s.TemporalCheckedAt.IsZero():
		return Degraded, "temporal: not checked yet"
	case !s.TemporalReachable:
		reason := "temporal unreachable: " + s.TemporalError
		if s.FlushFallback {
			reason += " (flushing in-process)"
		}
		return Degraded, reason
	case !s.WorkersStarted:
		return Degraded, "temporal: workers not started"
	case s.WorkflowsError != "":
		return Degraded, "temporal: starting workflows: " + s.WorkflowsError
	}
	for _, name := range []string{activities.LoopScheduler, activities.LoopJanitor, activities.LoopFlush} {
		if l := s.Loops[name]; l.Running && now.Sub(l.LastHeartbeat) > StuckAfter {
			return Degraded, fmt.Sprintf("%s stuck: no heartbeat for %s", name, now.Sub(l.LastHeartbeat).Round(time.Second))
		}
	}
	if s.NodeHeartbeatError != "" {
		return Degraded, "node heartbeat failing: " + s.NodeHeartbeatError
	}
	return Healthy, ""
}

// Query asks one of the workflows this node starts for its stats: id is
// workflows.SchedulerID, JanitorID or FlushID of this node's region (and
// node).
func (w *Worker) Query(ctx context.Context, id string) (workflows.Stats, error) {
	v, err := w.client.QueryWorkflow(ctx, id, "", workflows.StatsQuery)
	if err != nil {
		return workflows.Stats{}, fmt.Errorf("query %s: %w", id, err)
	}
	var st workflows.Stats
	if err := v.Get(&st); err != nil {
		return workflows.Stats{}, fmt.Errorf("query %s: %w", id, err)
	}
	return st, nil
}
