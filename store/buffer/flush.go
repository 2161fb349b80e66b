package buffer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/smq/smq/store"
)

// Sink is the part of store.Store a Flusher writes to. It must not change
// the messages it is given: they are the buffer's own.
type Sink interface {
	MessageInsertMany(ctx context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error)
	FlushMark(ctx context.Context, node string) (uint64, error)
}

// FlusherConfig configures a Flusher.
type FlusherConfig struct {
	// Node names this node's buffer in the database's flush watermarks.
	// Required.
	Node string
	// Interval is how often the flusher looks at the buffer when no signal
	// wakes it (a record skipped while busy sends none). A flush slower
	// than half of it halves the batch size. Defaults to 100 ms.
	Interval time.Duration
	// Linger is how long records that arrive while the flusher is idle wait
	// for others to join them in one database transaction, so that light
	// traffic costs a few transactions a second rather than one per
	// request. It follows an idle spell or a flush of fewer than MinBatch
	// records; a record due within 250 ms, or a batch's worth of records,
	// ends it at once. Defaults to 20 ms; negative: no wait.
	Linger time.Duration
	// MinBatch is the smallest batch size the flusher shrinks to. Defaults
	// to 100.
	MinBatch int
	// MaxBatch is the largest batch size the flusher grows to. Defaults to
	// 10,000.
	MaxBatch int
	// InitialBatch is the batch size to start with. Defaults to 1,000.
	InitialBatch int
	// Backoff spaces retries after a failed flush. Defaults to 100 ms
	// doubling up to 5 s.
	Backoff store.Backoff
	// Logger receives flush errors. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c FlusherConfig) withDefaults() FlusherConfig {
	c.Interval = cmp.Or(c.Interval, 100*time.Millisecond)
	c.Linger = cmp.Or(c.Linger, 20*time.Millisecond)
	c.MinBatch = cmp.Or(c.MinBatch, 100)
	c.MaxBatch = cmp.Or(c.MaxBatch, 10_000)
	c.InitialBatch = cmp.Or(c.InitialBatch, 1_000)
	c.Backoff.Base = cmp.Or(c.Backoff.Base, 100*time.Millisecond)
	c.Backoff.Factor = cmp.Or(c.Backoff.Factor, 2)
	c.Backoff.Cap = cmp.Or(c.Backoff.Cap, 5*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c FlusherConfig) validate() error {
	switch {
	case c.Node == "":
		return errors.New("field Node is required")
	case c.Interval < 0:
		return fmt.Errorf("field Interval must not be negative, got %s", c.Interval)
	case c.MinBatch < 1:
		return fmt.Errorf("field MinBatch must be at least 1, got %d", c.MinBatch)
	case c.MaxBatch < c.MinBatch:
		return fmt.Errorf("field MaxBatch must be at least MinBatch (%d), got %d", c.MinBatch, c.MaxBatch)
	case c.InitialBatch < c.MinBatch || c.InitialBatch > c.MaxBatch:
		return fmt.Errorf("field InitialBatch must be within MinBatch and MaxBatch, got %d", c.InitialBatch)
	case c.Backoff.Base < 0 || c.Backoff.Cap < c.Backoff.Base || c.Backoff.Factor < 1:
		return fmt.Errorf("field Backoff is invalid: %+v", c.Backoff)
	}
	return nil
}

// Flusher moves a buffer's records to the database, in batches whose
// watermark the database records with them, so a crash between the
// database's commit and the buffer's Commit duplicates nothing: the next
// run first discards what the watermark says the database has. The sink
// checks the watermark again inside each flush's transaction (see
// store.MessageInsertManyParams.Seqs): a flush that failed on the client's
// side may still be committing on the database's when the reconcile reads
// the mark.
type Flusher struct {
	buf  store.Buffer
	sink Sink
	cfg  FlusherConfig
	log  *slog.Logger

	// running is a semaphore of one: a single loop per Flusher, since the
	// worker may run it from a Temporal activity or, when Temporal is
	// unreachable, directly.
	running chan struct{}

	mu    sync.Mutex // guards stats
	stats store.FlushStats

	// idle, when set (by tests), is called each time the flusher starts
	// waiting for records.
	idle func()
}

// NewFlusher returns a Flusher from buf to sink. It panics on an invalid
// configuration, a programming error.
func NewFlusher(buf store.Buffer, sink Sink, cfg FlusherConfig) *Flusher {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		panic("buffer: flusher config: " + err.Error())
	}
	return &Flusher{
		buf:     buf,
		sink:    sink,
		cfg:     cfg,
		log:     cfg.Logger,
		running: make(chan struct{}, 1),
		stats:   store.FlushStats{BatchSize: cfg.InitialBatch},
	}
}

// Stats returns the flusher's counters.
func (f *Flusher) Stats() store.FlushStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Run flushes until ctx is done, then returns ctx's error. progress, when
// not nil, is called after each flush attempt and must be quick. A second
// Run waits for the first to return.
func (f *Flusher) Run(ctx context.Context, progress func(store.FlushStats)) error {
	return f.loop(ctx, progress, false)
}

// Drain flushes until the buffer is empty, retrying failures until ctx is
// done. It is meant for a graceful shutdown, once appends have stopped.
func (f *Flusher) Drain(ctx context.Context) error {
	return f.loop(ctx, nil, true)
}

func (f *Flusher) loop(ctx context.Context, progress func(store.FlushStats), drain bool) error {
	select {
	case f.running <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-f.running }()

	bo := &backoff.ExponentialBackOff{
		InitialInterval:     f.cfg.Backoff.Base,
		RandomizationFactor: 0.5,
		Multiplier:          f.cfg.Backoff.Factor,
		MaxInterval:         f.cfg.Backoff.Cap,
	}
	bo.Reset()
	var (
		reconciled bool
		lastErr    error
	)
	for {
		if err := ctx.Err(); err != nil {
			if drain && lastErr != nil {
				return fmt.Errorf("drain: %w", errors.Join(lastErr, err))
			}
			return err
		}
		var (
			n   int
			err error
		)
		if !reconciled {
			err = f.reconcile(ctx)
			reconciled = err == nil
		}
		if err == nil {
			n, err = f.flush(ctx)
		}
		if err != nil && ctx.Err() != nil {
			// Stopped mid-flush: not a failure; the batch was released.
			continue
		}
		if err != nil {
			lastErr = err
			f.mu.Lock()
			f.stats.Errors++
			f.stats.LastError = err.Error()
			f.mu.Unlock()
			f.log.Warn("flush failed", "node", f.cfg.Node, "err", err)
			// The failed call may have committed in the database: find out
			// how far it got before trying again.
			reconciled = false
			f.report(progress)
			f.sleep(ctx, bo.NextBackOff())
			continue
		}
		lastErr = nil
		bo.Reset()
		if n > 0 {
			f.report(progress)
		}
		switch {
		case n >= f.cfg.MinBatch || (drain && n > 0):
			// A batch worth its transaction: whatever arrived during it
			// is likely as many, and goes at once.
		case drain && f.buf.Stats().Depth == 0:
			return nil
		case n > 0:
			// What arrived during a small flush waits for company, as if
			// it had arrived while the flusher was idle.
			f.linger(ctx)
		default:
			if f.wait(ctx) && !drain {
				f.linger(ctx)
			}
		}
	}
}

// reconcile discards the records the database already has.
func (f *Flusher) reconcile(ctx context.Context) error {
	mark, err := f.sink.FlushMark(ctx, f.cfg.Node)
	if err != nil {
		return fmt.Errorf("flush mark: %w", err)
	}
	if mark == 0 {
		return nil
	}
	if err := f.buf.Discard(ctx, mark); err != nil {
		return fmt.Errorf("discard to flush mark: %w", err)
	}
	return nil
}

// landed reports whether batch b, whose insert failed, is in the database
// after all: a call can fail on its way back (a deadline, a reset
// connection) while its transaction still commits. The flush mark is read
// once no flush of this node is in flight (the sink's FlushMark waits for
// one). Released instead, b's records would be back in the buffer while
// their rows landed: a DELETE or PATCH would change the buffer's copy, find
// no row yet, and lose to the commit.
func (f *Flusher) landed(ctx context.Context, b *store.Batch) bool {
	mark, err := f.sink.FlushMark(ctx, f.cfg.Node)
	return err == nil && mark >= b.Seq
}

// flush writes one batch and returns how many messages it flushed.
func (f *Flusher) flush(ctx context.Context) (int, error) {
	size := f.Stats().BatchSize
	b := f.buf.Next(size)
	if b == nil {
		return 0, nil
	}
	start := time.Now()
	_, err := f.sink.MessageInsertMany(ctx, &store.MessageInsertManyParams{
		Messages: b.Messages,
		Node:     f.cfg.Node,
		Seq:      b.Seq,
		Seqs:     b.Seqs,
	})
	if err != nil {
		if f.landed(ctx, b) {
			f.log.Warn("flush: the insert's answer was lost, but it committed", "node", f.cfg.Node, "err", err)
			err = nil
		} else {
			err = fmt.Errorf("insert: %w", err)
		}
	}
	if err == nil {
		err = f.buf.Commit(ctx, b)
	}
	took := time.Since(start)

	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.LastDuration = took
	f.stats.LastAt = time.Now()
	if err != nil {
		f.buf.Release(b)
		return 0, err
	}
	n := len(b.Messages)
	f.stats.Flushed += int64(n)
	f.stats.LastError = ""
	// Adapt like the original SMQ: a slow flush means the database is
	// struggling, so take less; a quick full one means a backlog, so take
	// more.
	switch {
	case took > f.cfg.Interval/2:
		f.stats.BatchSize = max(size/2, f.cfg.MinBatch)
	case n == size:
		f.stats.BatchSize = min(size*2, f.cfg.MaxBatch)
	}
	return n, nil
}

func (f *Flusher) report(progress func(store.FlushStats)) {
	if progress != nil {
		progress(f.Stats())
	}
}

// wait returns when records may have arrived, after Interval at the latest
// (a record Next skipped while a Delete of it was being written, for one,
// sends no signal of its own), or when ctx is done. It reports whether
// records were appended.
func (f *Flusher) wait(ctx context.Context) bool {
	if f.idle != nil {
		f.idle()
	}
	t := time.NewTimer(f.cfg.Interval)
	defer t.Stop()
	select {
	case <-f.buf.Appended():
		return true
	case <-f.buf.Due():
		return false
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// linger waits up to Linger for more records to join those that arrived,
// unless one of them falls due soon or a batch's worth is waiting.
func (f *Flusher) linger(ctx context.Context) {
	if f.cfg.Linger <= 0 {
		return
	}
	t := time.NewTimer(f.cfg.Linger)
	defer t.Stop()
	for f.buf.Stats().Ready < f.Stats().BatchSize {
		select {
		case <-f.buf.Appended():
		case <-f.buf.Due():
			return
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (f *Flusher) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
