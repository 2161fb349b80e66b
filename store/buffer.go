package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Buffer holds accepted messages on one node until they are flushed to the
// database. Two implementations live in store/buffer: memory (a crash loses
// what is not flushed) and a Badger write-ahead log (fsynced before Append
// returns, replayed on open).
//
// Every record gets a sequence number, increasing in append order. A flush
// takes a Batch of the oldest records, writes them to the database together
// with the batch's Seq (see MessageInsertManyParams), then Commits it; a
// record of a batch in flight cannot change, so Delete and Update of such a
// record wait until the batch is committed or released.
type Buffer interface {
	// Append records msgs as one write: when it returns nil, they are
	// durable (WAL) or held (memory). It returns ErrBufferFull when they do
	// not fit within the configured capacity, ErrStorageFull when the disk
	// is full; then nothing of msgs was recorded.
	Append(ctx context.Context, msgs []*Message) error
	// Get returns a copy of a buffered message, and false when the buffer
	// does not hold it.
	Get(id uuid.UUID) (*Message, bool)
	// Delete removes a buffered message so that it is never flushed. It
	// returns false when the buffer does not hold it (any more): then, if it
	// existed, it is in the database.
	Delete(ctx context.Context, id uuid.UUID) (bool, error)
	// Update changes a buffered message with fn and records the change
	// durably; fn must not change the id. It returns false when the buffer
	// does not hold the message, as Delete does.
	Update(ctx context.Context, id uuid.UUID, fn func(*Message)) (*Message, bool, error)
	// Next takes up to max of the oldest records not in flight as a batch,
	// or returns nil when there are none.
	Next(max int) *Batch
	// Commit drops a flushed batch's records.
	Commit(ctx context.Context, b *Batch) error
	// Release returns a batch that could not be flushed; its records are
	// taken again by the next Next, in their order.
	Release(b *Batch)
	// Discard drops every record with a sequence up to seq: those the
	// database already has (after a crash between a flush's commit and its
	// Commit, FlushMark tells how far the database got).
	Discard(ctx context.Context, seq uint64) error
	// Appended returns a channel that receives a value after appends (several
	// appends may merge into one).
	Appended() <-chan struct{}
	// Due returns a channel that receives a value after an append or an
	// update of a message that falls due within a second, so that the
	// flusher writes it at once instead of waiting for others to join it.
	Due() <-chan struct{}
	// Stats reports the buffer's gauges.
	Stats() BufferStats
	// Close releases the buffer; the WAL keeps its records for the next open.
	Close() error
}

// Batch is a run of buffered messages taken by Next.
type Batch struct {
	Messages []*Message
	// Seqs[i] is the sequence of Messages[i], in ascending order.
	Seqs []uint64
	// Seq is the highest sequence in the batch; every live record up to it
	// is in the batch.
	Seq uint64
}

// BufferStats are a buffer's gauges.
type BufferStats struct {
	// Kind is "memory" or "wal".
	Kind string
	// Depth counts buffered messages, in flight included.
	Depth int
	// Ready counts the recorded ones: Depth without the appends still
	// being written.
	Ready int
	// Bytes is their payload size.
	Bytes int64
	// MaxDepth and MaxBytes are the configured capacity.
	MaxDepth int
	MaxBytes int64
	// WALBytes is the write-ahead log's size on disk (0 in memory).
	WALBytes int64
	// WALSyncs counts the write-ahead log's group writes since it was
	// opened, each synced to disk (0 in memory): how many creates shared
	// each fsync is the creates over it.
	WALSyncs int64
	// Failed, once the write-ahead log has failed to sync a write, says so:
	// it takes no more writes (store.ErrBufferFailed) until it is reopened.
	Failed string
	// WALSyncTime is how long those group writes took in all, Badger's
	// commit and the fsync after it: over WALSyncs, the mean time an
	// appender waits once its group is being written.
	WALSyncTime time.Duration
}

// FlushStats are a flusher's counters.
type FlushStats struct {
	// Flushed counts messages flushed since start.
	Flushed int64
	// Errors counts failed flushes since start.
	Errors int64
	// LastDuration is how long the last flush took.
	LastDuration time.Duration
	// LastAt is when the last flush ended.
	LastAt time.Time
	// LastError is the last flush error, empty after a success.
	LastError string
	// BatchSize is the current batch size.
	BatchSize int
}
