package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/smq/smq/store"
)

// FlushInput is one run of a node's flush. Zero fields take the
// Activities' Config.
type FlushInput struct {
	// Region and Node name the node whose buffer the run flushes; a run
	// that reaches another node fails with ErrTypeWrongNode.
	Region string `json:"region"`
	Node   string `json:"node"`
	// RunFor is how long the run flushes before it returns.
	RunFor time.Duration `json:"run_for,omitempty"`
}

// FlushResult is what one run of the flush did.
type FlushResult struct {
	RunStats
	// Flushed counts the messages written to the database.
	Flushed int64 `json:"flushed"`
	// LastDuration is how long the last flush took.
	LastDuration time.Duration `json:"last_duration"`
	// BatchSize is the flusher's batch size at the end of the run.
	BatchSize int `json:"batch_size"`
}

// Flush runs the node's Flusher for RunFor, heartbeating its counters, and
// returns what it flushed. The flusher retries its own database errors; an
// error it gives up with fails the run, to be retried.
func (a *Activities) Flush(ctx context.Context, in FlushInput) (FlushResult, error) {
	cfg := a.Config.WithDefaults()
	switch {
	case a.Flusher == nil:
		return FlushResult{}, notConfigured("flush: no flusher")
	case in.Node != "" && a.Node != "" && in.Node != a.Node:
		return FlushResult{}, wrongNode(fmt.Sprintf("flush: node %q's flush reached node %q", in.Node, a.Node))
	case in.Region != "" && a.Region != "" && in.Region != a.Region:
		return FlushResult{}, wrongNode(fmt.Sprintf("flush: region %q's flush reached a node of region %q", in.Region, a.Region))
	}

	var prev FlushResult
	resume(ctx, &prev)
	before := a.Flusher.Stats()

	// mu guards res, which the flusher's progress callback and the
	// heartbeat read and write.
	var mu sync.Mutex
	res := prev
	res.StartedAt = a.now()
	update := func(s store.FlushStats) {
		mu.Lock()
		defer mu.Unlock()
		res.Flushed = prev.Flushed + s.Flushed - before.Flushed
		res.Errors = prev.Errors + s.Errors - before.Errors
		res.LastDuration = s.LastDuration
		res.BatchSize = s.BatchSize
		if s.LastError != "" && s.Errors != before.Errors {
			res.LastError = s.LastError
			res.LastErrorAt = s.LastAt
		}
		res.Passes++
	}
	snapshot := func() any {
		mu.Lock()
		defer mu.Unlock()
		return res
	}

	r := a.newRunner(ctx, LoopFlush, cfg, cmp.Or(in.RunFor, cfg.RunFor), snapshot)
	runCtx, cancel := context.WithDeadline(ctx, r.deadline)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	// The heartbeat goes on from here rather than from progress, so that an
	// idle flusher still heartbeats, and so that it ends the run when the
	// worker stops.
	go func() {
		defer wg.Done()
		defer cancel()
		for !r.over() {
			r.beat(false)
			r.sleepUntil(r.lastBeat.Add(r.every), runCtx.Done())
			if runCtx.Err() != nil {
				return
			}
		}
	}()

	err := a.Flusher.Run(runCtx, update)
	cancel()
	wg.Wait()
	update(a.Flusher.Stats())
	mu.Lock()
	res.EndedAt = a.now()
	out := res
	mu.Unlock()
	r.done()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		r.a.markError(LoopFlush, a.now(), err)
		return out, fmt.Errorf("flush: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, nil
}
