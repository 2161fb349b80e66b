package activities

import (
	"cmp"
	"context"
	"fmt"
	"slices"
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
	// TakeoverGrace is how long every node of another region must have
	// been silent before the run takes that region's messages over.
	TakeoverGrace time.Duration `json:"takeover_grace,omitempty"`
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
	// TakenOver counts messages of other regions, whose nodes are all gone,
	// that the run promoted or recovered.
	TakenOver int64 `json:"taken_over"`
	// Orphans names the regions taken over at the last pass.
	Orphans []string `json:"orphans,omitempty"`
}

// Sweep is the janitor's loop: every Interval it puts a region's expired
// leases back for a retry (or dead-letters them), marks stale the nodes
// whose heartbeat stopped, and takes over the messages of regions whose
// nodes have all been silent for TakeoverGrace (promoting their due
// messages, at the janitor's pace, and recovering their leases),
// heartbeating all the while, and returns its counts after RunFor. Database errors are counted and waited out; only a
// database failing for GiveUpAfter fails the run.
func (a *Activities) Sweep(ctx context.Context, in SweepInput) (SweepResult, error) {
	cfg := a.Config.WithDefaults()
	region, err := a.regionOf("sweep", in.Region)
	if err != nil {
		return SweepResult{}, err
	}
	interval := cmp.Or(in.Interval, cfg.SweepInterval)
	limit := cmp.Or(in.Limit, cfg.RecoverLimit)
	staleAfter := cmp.Or(in.StaleAfter, cfg.StaleAfter)
	grace := cmp.Or(in.TakeoverGrace, cfg.TakeoverGrace)

	var res SweepResult
	resume(ctx, &res)
	res.StartedAt = a.now()
	r := a.newRunner(ctx, LoopJanitor, cfg, cmp.Or(in.RunFor, cfg.RunFor), func() any { return res })
	defer r.done()

	for !r.over() {
		next := a.now().Add(interval)
		beat := func() { r.beat(false) }
		err := a.sweep(ctx, region, limit, staleAfter, cfg.Backoff, &res, beat)
		if err == nil {
			err = a.takeOver(ctx, region, limit, grace, cfg.Backoff, &res, beat)
		}
		if err != nil {
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
// then marks silent nodes stale. beat is called after each pass, as in
// promote.
func (a *Activities) sweep(ctx context.Context, region string, limit int, staleAfter time.Duration, backoff store.Backoff, res *SweepResult, beat func()) error {
	res.Passes++
	retried, dead, err := a.recover(ctx, region, limit, backoff, beat)
	res.Retried += retried
	res.DeadLettered += dead
	if err != nil {
		return err
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

// recover runs recovery passes over region until one handles fewer than
// limit leases.
func (a *Activities) recover(ctx context.Context, region string, limit int, backoff store.Backoff, beat func()) (retried, dead int64, err error) {
	for {
		rec, err := a.Store.MessageRecover(ctx, &store.MessageRecoverParams{Region: region, Limit: limit, Backoff: backoff})
		if err != nil {
			return retried, dead, fmt.Errorf("recover %s: %w", region, err)
		}
		retried += int64(rec.Retried)
		dead += int64(rec.DeadLettered)
		beat()
		if rec.Retried+rec.DeadLettered < limit || ctx.Err() != nil {
			return retried, dead, nil
		}
	}
}

// takeOver promotes and recovers the messages of the regions whose nodes
// have all been silent for grace, and of regions that hold messages but no
// node at all (their nodes all left and deregistered).
func (a *Activities) takeOver(ctx context.Context, region string, limit int, grace time.Duration, backoff store.Backoff, res *SweepResult, beat func()) error {
	orphans, err := a.orphanRegions(ctx, region, grace)
	if err != nil {
		return err
	}
	res.Orphans = orphans
	for _, o := range orphans {
		retried, dead, err := a.recover(ctx, o, limit, backoff, beat)
		res.TakenOver += retried + dead
		if err != nil {
			return err
		}
		var p ScheduleResult
		_, err = a.promote(ctx, o, limit, &p, beat)
		res.TakenOver += p.Promoted
		if err != nil {
			return err
		}
	}
	return nil
}

// orphanRegions returns, in order, the regions other than own whose nodes
// are all stale, the last of them silent for grace, and those that hold
// messages but have no node.
func (a *Activities) orphanRegions(ctx context.Context, own string, grace time.Duration) ([]string, error) {
	const page = 1000
	alive := map[string]bool{}
	var regions []string
	now := a.now()
	for offset := 0; ; offset += page {
		nodes, err := a.Store.NodeList(ctx, page, offset)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		for _, n := range nodes {
			if n.Region == own {
				continue
			}
			if _, seen := alive[n.Region]; !seen {
				regions = append(regions, n.Region)
				alive[n.Region] = false
			}
			if n.Status != store.NodeStale || now.Sub(n.LastHeartbeat) < grace {
				alive[n.Region] = true
			}
		}
		if len(nodes) < page {
			break
		}
	}
	var orphans []string
	for _, r := range regions {
		if !alive[r] {
			orphans = append(orphans, r)
		}
	}
	withMessages, err := a.Store.MessageRegions(ctx)
	if err != nil {
		return nil, fmt.Errorf("list regions of messages: %w", err)
	}
	for _, r := range withMessages {
		if _, known := alive[r]; !known && r != own {
			orphans = append(orphans, r)
		}
	}
	slices.Sort(orphans)
	return orphans, nil
}
