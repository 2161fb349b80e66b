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
	"syscall"
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

// Keys: a record is recordPrefix and its seq, 8 bytes big-endian, so
// Badger's key order is seq order. Two meta keys hold 8-byte seqs.
var (
	recordPrefix = []byte{'r'}
	// headKey is the last seq of the last Append written whole. An Append
	// too big for one Badger transaction spans several; replay drops records
	// above head, the remains of one cut short by a crash.
	headKey = []byte("mhead")
	// trimmedKey is the highest seq Commit or Discard dropped.
	trimmedKey = []byte("mtrimmed")
)

func recordKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), recordPrefix...), seq)
}

func seqValue(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

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
// concurrent appenders share fsyncs.
type WAL struct {
	ix  *index
	db  *badger.DB
	cfg WALConfig
	log *slog.Logger

	// ops carries writes to the writer goroutine.
	ops chan *walOp
	// closeMu guards closed and is held for reading while sending on ops,
	// so that Close never closes ops under a sender.
	closeMu    sync.RWMutex
	closed     bool
	writerDone chan struct{}

	// seq is the next sequence; only the writer goroutine uses it after
	// open.
	seq uint64
	// trimmed is the persisted trimmedKey; only Commit and Discard use it,
	// and the index lets one of them run at a time.
	trimmed uint64

	// Commits counts Badger transactions committed (each one fsync); tests
	// compare it with the appends to see group commit work.
	Commits atomic.Int64

	lastGC    atomic.Int64 // UnixNano of the last GC start
	gcRunning atomic.Bool
	gcWG      sync.WaitGroup
}

var _ store.Buffer = (*WAL)(nil)

// walOp is one durable change: the records of one Append, numbered by the
// writer, or prepared entries (Delete, Update, Commit, Discard).
type walOp struct {
	recs    []*record
	entries []walEntry
	done    chan error // buffered: the writer never waits on it
}

// walEntry sets key to value, or deletes key.
type walEntry struct {
	key, value []byte
	del        bool
}

func setEntry(key, value []byte) walEntry { return walEntry{key: key, value: value} }
func deleteEntry(key []byte) walEntry     { return walEntry{key: key, del: true} }

func (op *walOp) size() (n int, bytes int) {
	for _, r := range op.recs {
		bytes += int(r.size)
	}
	return len(op.recs) + len(op.entries), bytes
}

// OpenWAL opens or creates the WAL in cfg.Dir and replays it.
func OpenWAL(cfg WALConfig) (*WAL, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("wal config: %w", err)
	}
	// Options per FINDINGS.md: 4 MB × 2 memtables with values over 1 KiB in
	// the value log keep a million records in about 420 MB. Smaller value
	// log files let GC reclaim space sooner (it never rewrites the active
	// file).
	opts := badger.DefaultOptions(cfg.Dir).
		WithSyncWrites(true).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithValueThreshold(1024).
		WithValueLogFileSize(64 << 20).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{cfg.Logger})
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open wal: %w", err)
	}
	w := &WAL{
		ix:         newIndex("wal", cfg.MaxDepth, cfg.MaxBytes),
		db:         db,
		cfg:        cfg,
		log:        cfg.Logger,
		ops:        make(chan *walOp, groupMaxRecords),
		writerDone: make(chan struct{}),
	}
	w.lastGC.Store(time.Now().UnixNano())
	if err := w.replay(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	go w.writer()
	return w, nil
}

// replay loads the records into the index and sets the next seq.
func (w *WAL) replay() error {
	var (
		recs         []*record
		stale        [][]byte
		head, maxSeq uint64
	)
	err := w.db.View(func(txn *badger.Txn) error {
		var err error
		if head, err = readSeq(txn, headKey); err != nil {
			return err
		}
		if w.trimmed, err = readSeq(txn, trimmedKey); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: recordPrefix, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.KeyCopy(nil)
			if len(key) != len(recordPrefix)+8 {
				return fmt.Errorf("replay: bad key %q", key)
			}
			seq := binary.BigEndian.Uint64(key[len(recordPrefix):])
			maxSeq = max(maxSeq, seq)
			if seq > head || seq <= w.trimmed {
				stale = append(stale, key)
				continue
			}
			var m *store.Message
			err := item.Value(func(v []byte) error {
				var err error
				m, err = decodeRecord(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("replay record %d: %w", seq, err)
			}
			recs = append(recs, &record{seq: seq, msg: m, size: int64(len(m.Payload))})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if len(stale) > 0 {
		w.log.Warn("wal: dropping records of an append cut short, or trimmed", "count", len(stale))
		if err := w.deleteKeys(stale); err != nil {
			return fmt.Errorf("replay: drop stale records: %w", err)
		}
	}
	w.ix.depth = len(recs)
	for _, r := range recs {
		w.ix.bytes += r.size
	}
	w.ix.admit(recs, false)
	// Sequences never go back: not below what the WAL holds or trimmed, and
	// not below the clock, because the database keeps this node's flush
	// watermark (Store.FlushMark) and a fresh or emptied WAL directory must
	// not hand out a seq at or below an old watermark, or the flusher would
	// discard new records as already flushed.
	w.seq = max(head+1, maxSeq+1, w.trimmed+1, uint64(time.Now().UnixNano()))
	return nil
}

func readSeq(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("meta %s: bad value", key)
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, err
}

// deleteKeys deletes keys in as many transactions as it takes.
func (w *WAL) deleteKeys(keys [][]byte) error {
	wb := w.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// submit hands op to the writer and waits for it to be durable. Once op is
// queued it waits whatever ctx says, because the write may happen anyway
// and its caller must know.
func (w *WAL) submit(ctx context.Context, op *walOp) error {
	op.done = make(chan error, 1)
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case w.ops <- op:
	case <-ctx.Done():
		w.closeMu.RUnlock()
		return ctx.Err()
	}
	w.closeMu.RUnlock()
	return <-op.done
}

// writer is the group committer. It does not linger for more records: a
// write takes whatever queued during the previous one, which measured
// better than waiting (FINDINGS.md).
func (w *WAL) writer() {
	defer close(w.writerDone)
	for op := range w.ops {
		group := []*walOp{op}
		n, size := op.size()
	take:
		for n < groupMaxRecords && size < groupMaxBytes {
			select {
			case op, ok := <-w.ops:
				if !ok {
					break take
				}
				group = append(group, op)
				dn, ds := op.size()
				n, size = n+dn, size+ds
			default:
				break take
			}
		}
		if err := w.checkSpace(n, size); err != nil {
			for _, op := range group {
				w.fail(op, err)
			}
			continue
		}
		w.write(group)
	}
}

// spaceReserve is the free space the WAL leaves on its filesystem beyond
// twice what a write adds. Badger writes its memtable log and value log
// through mmap'd sparse files, so a write that finds the filesystem full
// does not get ENOSPC: the process dies of SIGBUS. Refusing writes before
// the disk fills turns a full disk into store.ErrStorageFull.
const spaceReserve = 1 << 20

// checkSpace fails a write of n entries and size payload bytes that would
// leave the WAL's filesystem with less than spaceReserve free.
func (w *WAL) checkSpace(n, size int) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(w.cfg.Dir, &st); err != nil {
		return nil // cannot tell: let the write try
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need := 2*int64(size+256*n) + spaceReserve; free < need {
		return fmt.Errorf("wal write: %w: %d bytes free in %s, under the %d this write needs", store.ErrStorageFull, free, w.cfg.Dir, need)
	}
	return nil
}

// write makes group durable, in as few transactions as fit (normally one),
// and answers every op. An op is answered nil only once all of its entries
// are committed; the records of an Append are admitted to the index before
// its caller wakes.
func (w *WAL) write(group []*walOp) {
	txn := w.db.NewTransaction(true)
	defer func() { txn.Discard() }()

	var (
		ready []*walOp // ops whose every entry is in txn
		// curWritten holds the record keys of the op being added that an
		// earlier transaction committed (it did not fit in one): if the op
		// fails, they are removed again. curKeys are its keys in txn.
		curWritten [][]byte
		curKeys    [][]byte
	)
	commit := func() error {
		err := txn.Commit()
		w.Commits.Add(1)
		txn = w.db.NewTransaction(true)
		if err != nil {
			return err
		}
		for _, op := range ready {
			w.succeed(op)
		}
		ready = ready[:0]
		curWritten = append(curWritten, curKeys...)
		curKeys = curKeys[:0]
		return nil
	}
	apply := func(e walEntry) error {
		if e.del {
			return txn.Delete(e.key)
		}
		return txn.Set(e.key, e.value)
	}
	set := func(e walEntry) error {
		err := apply(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := commit(); err != nil {
				return err
			}
			err = apply(e)
		}
		return err
	}
	fail := func(err error, rest []*walOp) {
		err = walError(err)
		if len(curWritten) > 0 {
			if derr := w.deleteKeys(curWritten); derr != nil {
				w.log.Error("wal: failed append left records behind", "err", derr)
			}
		}
		for _, op := range ready {
			w.fail(op, err)
		}
		for _, op := range rest {
			w.fail(op, err)
		}
	}

	for i, op := range group {
		curWritten, curKeys = curWritten[:0], curKeys[:0]
		var err error
		for _, r := range op.recs {
			r.seq = w.seq
			w.seq++
			key := recordKey(r.seq)
			if err = set(setEntry(key, encodeRecord(nil, r.msg))); err != nil {
				break
			}
			curKeys = append(curKeys, key)
		}
		if err == nil && len(op.recs) > 0 {
			err = set(setEntry(headKey, seqValue(op.recs[len(op.recs)-1].seq)))
		}
		for _, e := range op.entries {
			if err != nil {
				break
			}
			err = set(e)
		}
		if err != nil {
			fail(err, group[i:])
			return
		}
		ready = append(ready, op)
	}
	if err := commit(); err != nil {
		fail(err, nil)
	}
}

func (w *WAL) succeed(op *walOp) {
	if len(op.recs) > 0 {
		w.ix.admit(op.recs, false)
	}
	op.done <- nil
}

func (w *WAL) fail(op *walOp, err error) { op.done <- err }

// walError marks a full disk as store.ErrStorageFull. Badger flattens the
// errors it wraps into text, so the text is checked too.
func walError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		return fmt.Errorf("wal write: %w: %w", store.ErrStorageFull, err)
	}
	return fmt.Errorf("wal write: %w", err)
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
	if err := w.submit(ctx, &walOp{recs: recs}); err != nil {
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
	err = w.submit(ctx, &walOp{entries: []walEntry{deleteEntry(recordKey(r.seq))}})
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
		err = w.submit(ctx, &walOp{entries: []walEntry{setEntry(recordKey(r.seq), encodeRecord(nil, msg))}})
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

// Commit implements store.Buffer: the batch's records and the new trimmed
// watermark go in one write.
func (w *WAL) Commit(ctx context.Context, b *store.Batch) error {
	err := w.ix.commit(b, func(recs []*record) error { return w.drop(ctx, recs, b.Seq) })
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	w.maybeGC()
	return nil
}

// Release implements store.Buffer.
func (w *WAL) Release(b *store.Batch) { w.ix.release(b) }

// Discard implements store.Buffer.
func (w *WAL) Discard(ctx context.Context, seq uint64) error {
	err := w.ix.discard(ctx, seq, func(recs []*record) error { return w.drop(ctx, recs, seq) })
	if err != nil {
		return fmt.Errorf("discard: %w", err)
	}
	return nil
}

// drop deletes recs and raises the trimmed watermark to seq. Deleting keys
// in a write batch stalls appenders far less than DropPrefix (FINDINGS.md).
func (w *WAL) drop(ctx context.Context, recs []*record, seq uint64) error {
	entries := make([]walEntry, 0, len(recs)+1)
	for _, r := range recs {
		entries = append(entries, deleteEntry(recordKey(r.seq)))
	}
	if seq > w.trimmed {
		entries = append(entries, setEntry(trimmedKey, seqValue(seq)))
	}
	if len(entries) == 0 {
		return nil
	}
	if err := w.submit(ctx, &walOp{entries: entries}); err != nil {
		return err
	}
	w.trimmed = max(w.trimmed, seq)
	return nil
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
			err := w.db.RunValueLogGC(0.5)
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

// Stats implements store.Buffer. WALBytes is what Badger last measured,
// refreshed about once a minute.
func (w *WAL) Stats() store.BufferStats {
	s := w.ix.stats()
	lsm, vlog := w.db.Size()
	s.WALBytes = lsm + vlog
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
	if err := w.db.Close(); err != nil {
		return fmt.Errorf("close wal: %w", err)
	}
	return nil
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
