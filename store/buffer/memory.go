// Package buffer holds the two implementations of store.Buffer: Memory,
// which loses on a crash what it did not flush, and WAL, a write-ahead log
// on Badger that is fsynced before Append returns and replayed on open;
// and the Flusher that moves buffered messages to the database.
package buffer

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// Default capacities of both buffers.
const (
	DefaultMaxDepth = 100_000
	DefaultMaxBytes = 256 << 20
)

// MemoryConfig configures a memory buffer.
type MemoryConfig struct {
	// MaxDepth is how many messages the buffer holds at most. Defaults to
	// 100,000.
	MaxDepth int
	// MaxBytes is how many payload bytes the buffer holds at most.
	// Defaults to 256 MiB.
	MaxBytes int64
}

func (c MemoryConfig) withDefaults() MemoryConfig {
	c.MaxDepth = cmp.Or(c.MaxDepth, DefaultMaxDepth)
	c.MaxBytes = cmp.Or(c.MaxBytes, DefaultMaxBytes)
	return c
}

func validateCapacity(maxDepth int, maxBytes int64) error {
	if maxDepth < 0 {
		return fmt.Errorf("field MaxDepth must not be negative, got %d", maxDepth)
	}
	if maxBytes < 0 {
		return fmt.Errorf("field MaxBytes must not be negative, got %d", maxBytes)
	}
	return nil
}

// Memory is a buffer in memory: fast, and a crash loses what it holds.
type Memory struct {
	ix *index
}

var _ store.Buffer = (*Memory)(nil)

// NewMemory returns an empty memory buffer. It panics on a negative
// capacity, a programming error.
func NewMemory(cfg MemoryConfig) *Memory {
	cfg = cfg.withDefaults()
	if err := validateCapacity(cfg.MaxDepth, cfg.MaxBytes); err != nil {
		panic("buffer: " + err.Error())
	}
	ix := newIndex("memory", cfg.MaxDepth, cfg.MaxBytes)
	// Sequences start at the clock, not at 1: the database keeps this node's
	// flush watermark (Store.FlushMark) across restarts, and a record
	// numbered at or below an old watermark would be discarded as flushed.
	ix.nextSeq = uint64(time.Now().UnixNano())
	return &Memory{ix: ix}
}

// Append implements store.Buffer.
func (m *Memory) Append(ctx context.Context, msgs []*store.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	recs := newRecords(msgs)
	if err := m.ix.reserve(recs); err != nil {
		return err
	}
	m.ix.admit(recs, true)
	return nil
}

// Get implements store.Buffer.
func (m *Memory) Get(id uuid.UUID) (*store.Message, bool) { return m.ix.get(id) }

// Delete implements store.Buffer.
func (m *Memory) Delete(ctx context.Context, id uuid.UUID) (bool, error) {
	r, err := m.ix.acquire(ctx, id)
	if r == nil {
		return false, err
	}
	m.ix.finish(r, true, nil)
	return true, nil
}

// Update implements store.Buffer.
func (m *Memory) Update(ctx context.Context, id uuid.UUID, fn func(*store.Message)) (*store.Message, bool, error) {
	r, err := m.ix.acquire(ctx, id)
	if r == nil {
		return nil, false, err
	}
	msg, err := update(r, fn)
	if err != nil {
		m.ix.finish(r, false, nil)
		return nil, true, err
	}
	m.ix.finish(r, false, msg)
	return cloneMessage(msg), true, nil
}

// Next implements store.Buffer.
func (m *Memory) Next(max int) *store.Batch { return m.ix.next(max) }

// Commit implements store.Buffer.
func (m *Memory) Commit(_ context.Context, b *store.Batch) error { return m.ix.commit(b, nil) }

// Release implements store.Buffer.
func (m *Memory) Release(b *store.Batch) { m.ix.release(b) }

// Discard implements store.Buffer.
func (m *Memory) Discard(ctx context.Context, seq uint64) error {
	return m.ix.discard(ctx, seq, nil)
}

// Appended implements store.Buffer.
func (m *Memory) Appended() <-chan struct{} { return m.ix.notify }

// Due implements store.Buffer.
func (m *Memory) Due() <-chan struct{} { return m.ix.due }

// Stats implements store.Buffer.
func (m *Memory) Stats() store.BufferStats { return m.ix.stats() }

// Close implements store.Buffer; a memory buffer has nothing to release.
func (m *Memory) Close() error { return nil }
