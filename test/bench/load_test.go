package bench

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"
)

// closedLoop runs conc callers of op back to back for d, after a warm-up
// of warm per caller, and returns the throughput and the latency of every
// call made after the warm-up. started, when not nil, is called on the
// caller's goroutine between the warm-up and the timed run. A 429
// (errBusy) is counted and retried after a short pause; any other error
// stops the run.
func closedLoop(ctx context.Context, conc int, d time.Duration, warm int, op func(ctx context.Context, worker, i int) error, started func()) (tput, error) {
	var (
		wg       sync.WaitGroup
		col      collector
		mu       sync.Mutex
		firstErr error
		ops      int
		busy     int
	)
	for w := range conc {
		for i := range warm {
			if _, err := retryBusy(ctx, func() error { return op(ctx, w, -1-i) }); err != nil {
				return tput{}, err
			}
		}
	}
	if started != nil {
		started()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			nBusy := 0
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				err := op(runCtx, w, i)
				if errors.Is(err, errBusy) {
					nBusy++
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			col.addAll(lat)
			mu.Lock()
			ops += len(lat)
			busy += nBusy
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return tput{}, firstErr
	}
	d2 := col.dist()
	return tput{Ops: ops, Elapsed: elapsed, Rate: float64(ops) / elapsed.Seconds(), Latency: d2.summary(), Errors: busy}, nil
}

// sequential runs op n times from one caller, after warm calls, and returns
// every latency.
func sequential(ctx context.Context, n, warm int, op func(ctx context.Context, i int) error) (*dist, error) {
	for i := range warm {
		if err := op(ctx, -1-i); err != nil {
			return nil, err
		}
	}
	d := &dist{samples: make([]time.Duration, 0, n)}
	for i := range n {
		t0 := time.Now()
		if err := op(ctx, i); err != nil {
			return nil, err
		}
		d.add(time.Since(t0))
	}
	return d, nil
}

// quietLogger passes on warnings and errors only: the peers' info logs
// would cost the load generator CPU.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
