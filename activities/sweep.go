package activities

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/smq/smq/store"
)

// SweepInput is one run of a region's janitor. Zero fields take the
// Activities' Config.
type SweepInput struct {
	// Region is the region whose expired leases the run recovers.
	Region string `json:"region"`
	// RunFor is how long the run loops before it returns.
	RunFor time.Duration `json:"run_for,omitempty"`
	// Interval is the pause between sweeps.
	Interval time.Duration `json:"interval,omitempty"`
	// Limit is the most expired leases one recovery pass handles.
	Limit int `json:"limit,omitempty"`
	// StaleAfter is how long a node's heartbeat may be silent before the
	// node is marked stale.
	StaleAfter time.Duration `json:"stale_after,omitempty"`
}

// SweepResult is what one run of the janitor did.
type SweepResult struct {
	RunStats
	// Retried counts expired leases put back for a retry.
	Retried int64 `json:"retried"`
	// DeadLettered counts messages moved to their dead-letter channel.
	DeadLettered int64 `json:"dead_lettered"`
	// StaleNodes counts nodes marked stale.
	StaleNodes int64 `json:"stale_nodes"`
}

// Sweep is the janitor's loop: every Interval it puts a region's expired
// leases back for a retry (or dead-letters them) and marks stale the nodes
// whose heartbeat stopped, heartbeating all the while, and returns its
// counts after RunFor. Database errors are counted and waited out; only a
// database failing for GiveUpAfter fails the run.
func (a *Activities) Sweep(ctx context.Context, in SweepInput) (SweepResult, error) {
	cfg := a.Config.WithDefaults()
	region := cmp.Or(in.Region, a.Region)
	switch {
	case region == "":
		return SweepResult{}, invalidInput("sweep: region is required")
	case a.Store == nil:
		return SweepResult{}, notConfigured("sweep: no store")
	case a.Region != "" && region != a.Region:
		return SweepResult{}, wrongNode(fmt.Sprintf("sweep: region %q reached a node of region %q", region, a.Region))
	}
	interval := cmp.Or(in.Interval, cfg.SweepInterval)
	limit := cmp.Or(in.Limit, cfg.RecoverLimit)
	staleAfter := cmp.Or(in.StaleAfter, cfg.StaleAfter)

	var res SweepResult
	resume(ctx, &res)
	res.StartedAt = a.now()
	r := a.newRunner(ctx, LoopJanitor, cfg, cmp.Or(in.RunFor, cfg.RunFor), func() any { return res })
	defer r.done()

	for !r.over() {
		next := a.now().Add(interval)
		if err := a.sweep(ctx, region, limit, staleAfter, cfg.Backoff, &res); err != nil {
			if ctx.Err() != nil {
				break
			}
			pause, giveUp := r.failed(&res.RunStats, err)
			if giveUp != nil {
				res.EndedAt = a.now()
				return res, giveUp
			}
			next = a.now().Add(max(pause, interval))
		} else {
			r.succeeded()
		}
		r.beat(false)
		r.sleepUntil(next, nil)
	}
	res.EndedAt = a.now()
	return res, nil
}

// sweep runs recovery passes until one handles fewer than limit leases,
// then marks silent nodes stale.
func (a *Activities) sweep(ctx context.Context, region string, limit int, staleAfter time.Duration, backoff store.Backoff, res *SweepResult) error {
	for {
		rec, err := a.Store.MessageRecover(ctx, &store.MessageRecoverParams{Region: region, Limit: limit, Backoff: backoff})
		if err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		res.Passes++
		res.Retried += int64(rec.Retried)
		res.DeadLettered += int64(rec.DeadLettered)
		if rec.Retried+rec.DeadLettered < limit || ctx.Err() != nil {
			break
		}
	}
	stale, err := a.Store.NodeMarkStale(ctx, staleAfter)
	if err != nil {
		return fmt.Errorf("mark stale nodes: %w", err)
	}
	for _, n := range stale {
		a.logger().Info("node marked stale", "node", n.ID, "region", n.Region, "last_heartbeat", n.LastHeartbeat)
	}
	res.StaleNodes += int64(len(stale))
	return nil
}
