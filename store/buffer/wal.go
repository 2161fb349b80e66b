package buffer

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// ErrClosed is returned by a WAL used after Close.
var ErrClosed = errors.New("buffer closed")

// A group write takes at most this much of the queue, so one slow write
// does not grow without bound while appenders wait.
const (
	groupMaxRecords = 1000
	groupMaxBytes   = 4 << 20
)

// entryMaxBytes bounds the records of one append entry (entry.go): an
// Append bigger than that is split into parts. Entries stay under
// valueThreshold, in Badger's LSM tree, where compaction reclaims the space
// of trimmed ones within seconds. In the value log they would cost a little
// less to write, but its garbage collection only learns what is garbage
// from compactions, which a few entries per group seldom cause: measured,
// the directory grew by all that was written.
const (
	entryMaxBytes  = 256 << 10
	valueThreshold = 512 << 10
)

// valueLogFileSize is the size of Badger's value log files; a test lowers
// it to see them roll over.
var valueLogFileSize int64 = 64 << 20

// Keys. A data key is a prefix byte and a seq, 8 bytes big-endian, so
// Badger's key order is seq order within each prefix. Replay refuses any
// other key: it would be a WAL of another layout.
const (
	// appendPrefix and the seq of its first record key an append entry.
	appendPrefix = 'a'
	// deletedPrefix and a seq key the tombstone of a record Delete removed;
	// the value is empty.
	deletedPrefix = 'd'
	// updatedPrefix and a seq key the latest version of a record Update
	// changed, in the encoding of encodeRecord.
	updatedPrefix = 'u'
)

// trimmedKey holds the highest seq Commit or Discard trimmed, 8 bytes
// big-endian: replay skips the records at or below it.
var trimmedKey = []byte("mtrimmed")

func seqKey(prefix byte, seq uint64) []byte {
	k := make([]byte, 1+8)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func seqValue(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// Bits of WAL.overrides.
const (
	overrideDeleted = 1 << iota
	overrideUpdated
)

// entrySpan is the first and last seq of an append entry.
type entrySpan struct{ first, last uint64 }

// WALConfig configures a write-ahead log buffer.
type WALConfig struct {
	// Dir is the Badger directory. Required.
	Dir string
	// MaxDepth is how many messages the buffer holds at most. Defaults to
	// 100,000.
	MaxDepth int
	// MaxBytes is how many payload bytes the buffer holds at most.
	// Defaults to 256 MiB.
	MaxBytes int64
	// GCInterval is the least time between two runs of Badger's value-log
	// garbage collection, which Commit starts in the background. Defaults
	// to 1 minute.
	GCInterval time.Duration
	// Logger receives Badger's warnings and errors and the WAL's own.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

func (c WALConfig) withDefaults() WALConfig {
	c.MaxDepth = cmp.Or(c.MaxDepth, DefaultMaxDepth)
	c.MaxBytes = cmp.Or(c.MaxBytes, DefaultMaxBytes)
	c.GCInterval = cmp.Or(c.GCInterval, time.Minute)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c WALConfig) validate() error {
	if c.Dir == "" {
		return errors.New("field Dir is required")
	}
	if c.GCInterval < 0 {
		return fmt.Errorf("field GCInterval must not be negative, got %s", c.GCInterval)
	}
	return validateCapacity(c.MaxDepth, c.MaxBytes)
}

// WAL is a buffer whose records are fsynced to a Badger database before
// Append returns, and replayed into memory on open. Reads never touch the
// disk: an index in memory serves Get and picks batches.
//
// Writes go through one writer goroutine, a group committer: it takes
// everything queued, writes it in one transaction and syncs once, so
// concurrent appenders share fsyncs. The records of a group go in as few
// Badger entries as their size allows (entry.go), and the flusher's Commit
// trims them by a watermark and the deletion of the entries wholly below
// it, so Badger's work is per group and per flush, not per message.
type WAL struct {
	ix     *index
	db     *badger.DB
	syncer *syncer // makes Badger's writes durable
	cfg    WALConfig
	log    *slog.Logger

	// ops carries writes to the writer goroutine.
	ops chan *walOp
	// closeMu guards closed and is held for reading while sending on ops,
	// so that Close never closes ops under a sender.
	closeMu    sync.RWMutex
	closed     bool
	writerDone chan struct{}

	// The fields down to space belong to the writer goroutine once replay
	// has set them.

	// seq is the next sequence.
	seq uint64
	// entryMax bounds an append entry's records: entryMaxBytes, lower in
	// tests.
	entryMax int
	// entries are the append entries written and not yet trimmed, in seq
	// order.
	entries []entrySpan
	// overrides holds the seqs with a tombstone or update key not yet
	// trimmed, and which of the two (overrideDeleted, overrideUpdated).
	overrides map[uint64]uint8
	// trim is the watermark Commit and Discard asked for (mark), the one
	// last written (written) and the keys below mark still to delete.
	trim struct {
		mark, written uint64
		dels          [][]byte
	}
	// trimIdle is how long a trim waits for a write to ride with:
	// defaultTrimIdle, shorter in tests.
	trimIdle time.Duration
	// freeSpace is statfsFree; tests fake a filling disk with it.
	freeSpace func(dir string) (int64, error)
	// trimFailing is set while trims fail to be written, so that the
	// failure is logged once.
	trimFailing bool
	space       spaceCache
	// admitting is succeed's buffer, kept to spare an allocation per
	// commit.
	admitting [][]*record

	// Commits counts Badger transactions committed (each one synced); tests
	// compare it with the appends to see group commit work.
	Commits atomic.Int64
	// syncNanos sums the time the commits took, each with its sync.
	syncNanos atomic.Int64
	// Entries counts the Badger entries the WAL wrote, sets and deletes,
	// besides Badger's own; tests and benchmarks compare it with the
	// appends and commits.
	Entries atomic.Int64

	// broken is set, to the error it answers every later write with, once
	// a commit's sync failed (groupTxn.commit).
	broken atomic.Pointer[error]

	lastGC    atomic.Int64 // UnixNano of the last GC start
	gcRunning atomic.Bool
	gcWG      sync.WaitGroup
}

var _ store.Buffer = (*WAL)(nil)

// walOp is one change for the writer: the records of one Append (numbered
// by the writer), a Delete's tombstone or an Update's new version, or a
// trim from Commit or Discard.
type walOp struct {
	// recs and enc are an Append's records and their encoding, after
	// entryHeaderMax bytes of room (encodeRecords).
	recs []*record
	enc  []byte
	// override is deletedPrefix or updatedPrefix for a change of the record
	// seq; value is an update's encoded record.
	override byte
	seq      uint64
	value    []byte
	// trim is the watermark of a Commit or Discard. Nobody waits for it to
	// be written: a trim lost in a crash is redone by replay and the
	// flusher's reconcile.
	trim uint64

	// done receives the outcome of an op that has a waiter; it is buffered,
	// so the writer never waits on it.
	done chan error
	// written is set once all of the op's entries are in the writer's
	// transaction; answered once done has its value.
	written, answered bool
}

// size is what the op counts towards a group's limits and its space check.
func (op *walOp) size() (n int, bytes int) {
	switch {
	case op.recs != nil:
		return len(op.recs), len(op.enc)
	case op.override != 0:
		return 1, len(op.value)
	default:
		return 1, 0
	}
}

// OpenWAL opens or creates the WAL in cfg.Dir and replays it.
func OpenWAL(cfg WALConfig) (*WAL, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("wal config: %w", err)
	}
	// Options per FINDINGS.md: 4 MB × 2 memtables. The value threshold is
	// at most 15 % of a memtable, as Badger requires, and keeps append
	// entries (entryMaxBytes) out of the value log; only a record bigger
	// than valueThreshold goes there. Smaller value log files let GC reclaim
	// space sooner (it never rewrites the active file).
	// Badger does not sync; the WAL syncs what each commit wrote (sync.go).
	opts := badger.DefaultOptions(cfg.Dir).
		WithSyncWrites(false).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{cfg.Logger})
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open wal: %w", err)
	}
	syncer, err := newSyncer(cfg.Dir)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	w := &WAL{
		ix:         newIndex("wal", cfg.MaxDepth, cfg.MaxBytes),
		db:         db,
		syncer:     syncer,
		cfg:        cfg,
		log:        cfg.Logger,
		ops:        make(chan *walOp, groupMaxRecords),
		writerDone: make(chan struct{}),
		entryMax:   entryMaxBytes,
		trimIdle:   defaultTrimIdle,
		freeSpace:  statfsFree,
		overrides:  make(map[uint64]uint8),
	}
	w.lastGC.Store(time.Now().UnixNano())
	if err := w.replay(); err != nil {
		return nil, errors.Join(err, syncer.close(), db.Close())
	}
	go w.writer()
	return w, nil
}

// enqueue hands op to the writer.
func (w *WAL) enqueue(ctx context.Context, op *walOp) error {
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.ops <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit hands op to the writer and waits for it to be durable. Once op is
// queued it waits whatever ctx says, because the write may happen anyway
// and its caller must know.
func (w *WAL) submit(ctx context.Context, op *walOp) error {
	op.done = make(chan error, 1)
	if err := w.enqueue(ctx, op); err != nil {
		return err
	}
	return <-op.done
}

// Append implements store.Buffer: msgs are written in one group commit,
// all or nothing, and fsynced before it returns.
func (w *WAL) Append(ctx context.Context, msgs []*store.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	recs := newRecords(msgs)
	if err := w.ix.reserve(recs); err != nil {
		return err
	}
	// Encoded here, not in the writer: callers encode in parallel, and the
	// writer, which all of them wait for, only copies.
	if err := w.submit(ctx, &walOp{recs: recs, enc: encodeRecords(recs)}); err != nil {
		w.ix.unreserve(recs)
		return err
	}
	return nil
}

// Get implements store.Buffer.
func (w *WAL) Get(id uuid.UUID) (*store.Message, bool) { return w.ix.get(id) }

// Delete implements store.Buffer; the deletion is durable when it returns
// true.
func (w *WAL) Delete(ctx context.Context, id uuid.UUID) (bool, error) {
	r, err := w.ix.acquire(ctx, id)
	if r == nil {
		return false, err
	}
	err = w.submit(ctx, &walOp{override: deletedPrefix, seq: r.seq})
	w.ix.finish(r, err == nil, nil)
	if err != nil {
		return false, fmt.Errorf("delete: %w", err)
	}
	return true, nil
}

// Update implements store.Buffer; the record keeps its seq and the change
// is durable when it returns.
func (w *WAL) Update(ctx context.Context, id uuid.UUID, fn func(*store.Message)) (*store.Message, bool, error) {
	r, err := w.ix.acquire(ctx, id)
	if r == nil {
		return nil, false, err
	}
	msg, err := update(r, fn)
	if err == nil {
		err = w.submit(ctx, &walOp{override: updatedPrefix, seq: r.seq, value: encodeRecord(nil, msg)})
	}
	if err != nil {
		w.ix.finish(r, false, nil)
		return nil, true, fmt.Errorf("update: %w", err)
	}
	w.ix.finish(r, false, msg)
	return cloneMessage(msg), true, nil
}

// Next implements store.Buffer.
func (w *WAL) Next(max int) *store.Batch { return w.ix.next(max) }

// Commit implements store.Buffer: the batch leaves the index at once, and
// the WAL is trimmed to its watermark with the next group write, which
// Commit does not wait for (see walOp.trim).
func (w *WAL) Commit(ctx context.Context, b *store.Batch) error {
	err := w.ix.commit(b, func([]*record) error { return w.trimTo(ctx, b.Seq) })
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	w.maybeGC()
	return nil
}

// Release implements store.Buffer.
func (w *WAL) Release(b *store.Batch) { w.ix.release(b) }

// Discard implements store.Buffer; like Commit, it does not wait for the
// trim to be written.
func (w *WAL) Discard(ctx context.Context, seq uint64) error {
	err := w.ix.discard(ctx, seq, func([]*record) error { return w.trimTo(ctx, seq) })
	if err != nil {
		return fmt.Errorf("discard: %w", err)
	}
	return nil
}

// trimTo asks the writer to trim the records at or below seq.
func (w *WAL) trimTo(ctx context.Context, seq uint64) error {
	return w.enqueue(ctx, &walOp{trim: seq})
}

// maybeGC starts Badger's value-log GC in the background at most once per
// GCInterval, so that the space of flushed records is given back.
func (w *WAL) maybeGC() {
	last := w.lastGC.Load()
	if time.Since(time.Unix(0, last)) < w.cfg.GCInterval || !w.gcRunning.CompareAndSwap(false, true) {
		return
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		w.gcRunning.Store(false)
		return
	}
	w.lastGC.Store(time.Now().UnixNano())
	w.gcWG.Go(func() {
		defer w.gcRunning.Store(false)
		// Each successful run rewrites one file; go on while there is more.
		for {
			err := w.rewriteValueLog()
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				w.log.Warn("wal: value log gc", "err", err)
			}
			return
		}
	})
}

// Appended implements store.Buffer.
func (w *WAL) Appended() <-chan struct{} { return w.ix.notify }

// Due implements store.Buffer.
func (w *WAL) Due() <-chan struct{} { return w.ix.due }

// Stats implements store.Buffer. WALBytes is what Badger last measured,
// refreshed about once a minute; WALSyncs is Commits.
func (w *WAL) Stats() store.BufferStats {
	s := w.ix.stats()
	lsm, vlog := w.db.Size()
	s.WALBytes = lsm + vlog
	s.WALSyncs = w.Commits.Load()
	s.WALSyncTime = time.Duration(w.syncNanos.Load())
	if err := w.broken.Load(); err != nil {
		s.Failed = (*err).Error()
	}
	return s
}

// Close stops the writer once queued writes are done and closes Badger.
// The records stay for the next open.
func (w *WAL) Close() error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return nil
	}
	w.closed = true
	w.closeMu.Unlock()
	close(w.ops)
	<-w.writerDone
	w.gcWG.Wait()
	if err := errors.Join(w.db.Close(), w.syncer.close()); err != nil {
		return fmt.Errorf("close wal: %w", err)
	}
	return nil
}

// rewriteValueLog runs one pass of Badger's value-log GC, which rewrites
// the live values of one file and deletes the file. Badger does not sync
// (sync.go): it would delete the file before the rewrite is durable. But it
// defers the deletion while an iterator is open, so one is held open until
// the logs are synced.
func (w *WAL) rewriteValueLog() error {
	txn := w.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	if err := w.db.RunValueLogGC(0.5); err != nil {
		return err
	}
	return w.syncer.syncAll()
}

// badgerLogger passes Badger's warnings and errors to slog and drops its
// chatter.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, args ...any) {
	l.log.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (l badgerLogger) Warningf(f string, args ...any) {
	l.log.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
