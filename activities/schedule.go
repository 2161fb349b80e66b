package activities

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/smq/smq/store"
)

// ScheduleInput is one run of a region's scheduler. Zero fields take the
// Activities' Config.
type ScheduleInput struct {
	// Region is the region whose PENDING messages the run promotes.
	Region string `json:"region"`
	// RunFor is how long the run loops before it returns.
	RunFor time.Duration `json:"run_for,omitempty"`
	// Limit is the most messages one promotion pass makes ready.
	Limit int `json:"limit,omitempty"`
	// MaxIdle is the longest the run sleeps without checking the database.
	MaxIdle time.Duration `json:"max_idle,omitempty"`
}

// ScheduleResult is what one run of the scheduler did.
type ScheduleResult struct {
	RunStats
	// Promoted counts the messages made ready.
	Promoted int64 `json:"promoted"`
	// MaxLateness is the longest any of them waited past its scheduled time
	// before it became ready.
	MaxLateness time.Duration `json:"max_lateness"`
	// Wakeups counts the times a notification cut a sleep short.
	Wakeups int64 `json:"wakeups"`
}

// maxSpin bounds the pause when the database reports a due message that a
// pass did not promote (the node's clock is ahead of the database's, or
// another scheduler took the rows): the run polls again after 1 ms, 2 ms, …
// up to this.
const maxSpin = 100 * time.Millisecond

// Schedule is the scheduler's loop: it makes a region's due PENDING messages
// READY, then sleeps until the next one is due, a notification says earlier
// messages arrived (store.DueTopic), or MaxIdle passed, heartbeating all the
// while, and returns its counts after RunFor. Database errors are counted
// and waited out; only a database failing for GiveUpAfter fails the run.
func (a *Activities) Schedule(ctx context.Context, in ScheduleInput) (ScheduleResult, error) {
	cfg := a.Config.WithDefaults()
	region, err := a.regionOf("schedule", in.Region)
	if err != nil {
		return ScheduleResult{}, err
	}
	limit := cmp.Or(in.Limit, cfg.PromoteLimit)
	maxIdle := cmp.Or(in.MaxIdle, cfg.MaxIdle)

	var res ScheduleResult
	resume(ctx, &res)
	res.StartedAt = a.now()

	// Subscribe before the first pass, so that a message arriving between
	// the pass and the sleep still wakes the sleep.
	var wake <-chan struct{}
	if a.Notifier != nil {
		ch, unsubscribe := a.Notifier.Subscribe(store.DueTopic(region))
		defer unsubscribe()
		wake = ch
	}

	r := a.newRunner(ctx, LoopScheduler, cfg, cmp.Or(in.RunFor, cfg.RunFor), func() any { return res })
	defer r.done()

	spin := time.Duration(0)
	for !r.over() {
		before := res.Promoted
		next, err := a.promote(ctx, region, limit, &res, func() { r.beat(false) })
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			pause, giveUp := r.failed(&res.RunStats, err)
			if giveUp != nil {
				res.EndedAt = a.now()
				return res, giveUp
			}
			r.beat(false)
			r.sleepUntil(a.now().Add(pause), nil)
			continue
		}
		r.succeeded()
		now := a.now()
		until := now.Add(maxIdle)
		switch {
		case next.IsZero():
			spin = 0
		case next.After(now):
			spin = 0
			until = earliest(until, next)
		case res.Promoted > before:
			// More fell due while the pass ran (a steady stream of due
			// messages): go again at once.
			spin = 0
			until = now
		default:
			// Due by this node's clock, yet the pass found nothing: the
			// database's clock is behind. Back off rather than spin.
			spin = min(max(2*spin, time.Millisecond), maxSpin)
			until = now.Add(spin)
		}
		r.beat(false)
		a.logger().Debug("scheduler pass", "region", region, "next_due", next, "sleep", until.Sub(now))
		select {
		case <-wake:
			// A notification that came during the pass: the pass may have
			// read the next due time before the new messages landed.
			res.Wakeups++
			continue
		default:
		}
		if r.sleepUntil(until, wake) {
			res.Wakeups++
		}
	}
	res.EndedAt = a.now()
	return res, nil
}

// promote runs promotion passes until one makes fewer than limit messages
// ready, and returns the region's next due time (zero when none). beat is
// called after each pass: a backlog of a million due messages takes longer
// to promote than the activity's heartbeat timeout.
func (a *Activities) promote(ctx context.Context, region string, limit int, res *ScheduleResult, beat func()) (time.Time, error) {
	for {
		p, err := a.Store.MessagePromote(ctx, &store.MessagePromoteParams{Region: region, Limit: limit})
		if err != nil {
			return time.Time{}, fmt.Errorf("promote: %w", err)
		}
		res.Passes++
		if p.Count > 0 {
			res.Promoted += int64(p.Count)
			for _, l := range p.Lateness {
				res.MaxLateness = max(res.MaxLateness, l)
			}
			if a.OnPromoted != nil {
				a.OnPromoted(*p)
			}
		}
		beat()
		if p.Count < limit || ctx.Err() != nil {
			return p.NextDue, nil
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
