package activities

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// RunStats are the counters every loop's run reports.
type RunStats struct {
	// StartedAt and EndedAt bound the run.
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// Passes counts the loop's passes over the database.
	Passes int64 `json:"passes"`
	// Errors counts the errors the loop met and went on after.
	Errors int64 `json:"errors"`
	// LastError is the last of them, empty when none.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when it happened.
	LastErrorAt time.Time `json:"last_error_at"`
}

// runner is the machinery a loop shares: heartbeats that keep flowing while
// the loop sleeps, the end of the run (deadline, cancellation, or the worker
// stopping), and backing off while the database fails.
type runner struct {
	ctx      context.Context
	a        *Activities
	name     string
	cfg      ActivityConfig
	every    time.Duration
	deadline time.Time
	stop     <-chan struct{}
	details  func() any
	timer    *time.Timer

	lastBeat time.Time
	// errSince is when the current run of errors began, zero after a success.
	errSince time.Time
	errPause time.Duration
}

func (a *Activities) newRunner(ctx context.Context, name string, cfg ActivityConfig, runFor time.Duration, details func() any) *runner {
	r := &runner{
		ctx:     ctx,
		a:       a,
		name:    name,
		cfg:     cfg,
		every:   cfg.HeartbeatEvery,
		details: details,
		timer:   time.NewTimer(time.Hour),
	}
	r.timer.Stop()
	if activity.IsActivity(ctx) {
		r.stop = activity.GetWorkerStopChannel(ctx)
		if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 && hb/3 < r.every {
			r.every = hb / 3
		}
	}
	r.deadline = a.now().Add(runFor)
	a.markRunning(name, true)
	return r
}

// done ends the run: a last heartbeat with the final counts.
func (r *runner) done() {
	r.timer.Stop()
	r.beat(true)
	r.a.markRunning(r.name, false)
}

// over reports whether the run should end.
func (r *runner) over() bool {
	if r.ctx.Err() != nil || !r.a.now().Before(r.deadline) {
		return true
	}
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// beat heartbeats when one is due, or now when force is set.
func (r *runner) beat(force bool) {
	now := r.a.now()
	if !force && now.Sub(r.lastBeat) < r.every {
		return
	}
	r.lastBeat = now
	if activity.IsActivity(r.ctx) {
		activity.RecordHeartbeat(r.ctx, r.details())
	}
	r.a.markHeartbeat(r.name, now)
}

// sleepUntil waits until t (or the end of the run, whichever is first),
// heartbeating on the way. It returns early when wake receives a value
// (then it reports true) or the run ends.
func (r *runner) sleepUntil(t time.Time, wake <-chan struct{}) (woken bool) {
	if t.After(r.deadline) {
		t = r.deadline
	}
	for {
		now := r.a.now()
		d := t.Sub(now)
		if d <= 0 {
			return false
		}
		beatIn := r.lastBeat.Add(r.every).Sub(now)
		if beatIn <= 0 {
			r.beat(true)
			beatIn = r.every
		}
		r.timer.Reset(min(d, beatIn))
		select {
		case <-r.timer.C:
		case <-wake:
			r.timer.Stop()
			return true
		case <-r.stop:
			r.timer.Stop()
			return false
		case <-r.ctx.Done():
			r.timer.Stop()
			return false
		}
	}
}

// failed records a database error in st and returns how long to pause, or
// an error when errors have gone on for GiveUpAfter: then the run fails, so
// that the workflow retries it, maybe on a node that reaches the database.
func (r *runner) failed(st *RunStats, err error) (time.Duration, error) {
	now := r.a.now()
	st.Errors++
	st.LastError = err.Error()
	st.LastErrorAt = now
	r.a.markError(r.name, now, err)
	if r.ctx.Err() != nil {
		return 0, nil
	}
	if r.errSince.IsZero() {
		r.errSince = now
		r.errPause = r.cfg.ErrorBackoff
	} else {
		r.errPause = min(2*r.errPause, r.cfg.MaxErrorBackoff)
	}
	r.a.logger().Warn("loop error", "loop", r.name, "error", err, "failing_for", now.Sub(r.errSince))
	if now.Sub(r.errSince) >= r.cfg.GiveUpAfter {
		return 0, fmt.Errorf("%s: database failing for %s: %w", r.name, now.Sub(r.errSince).Round(time.Second), err)
	}
	return r.errPause, nil
}

// succeeded ends a run of errors.
func (r *runner) succeeded() { r.errSince = time.Time{} }

// resume loads the counts a previous attempt of this activity heartbeated,
// so that a run restarted on another node reports the whole run's work.
func resume(ctx context.Context, details any) {
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, details)
	}
}

// regionOf returns the region a region loop (op) serves: the input's, or
// this node's; it must be this node's, and the loop needs the store.
func (a *Activities) regionOf(op, input string) (string, error) {
	region := cmp.Or(input, a.Region)
	switch {
	case region == "":
		return "", invalidInput(op + ": region is required")
	case a.Store == nil:
		return "", notConfigured(op + ": no store")
	case a.Region != "" && region != a.Region:
		return "", wrongNode(fmt.Sprintf("%s: region %q reached a node of region %q", op, region, a.Region))
	}
	return region, nil
}

func invalidInput(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidInput, nil)
}

func notConfigured(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotConfigured, nil)
}

func wrongNode(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeWrongNode, nil)
}
