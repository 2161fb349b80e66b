package buffer

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/smq/smq/store"
)

// defaultTrimIdle is how long a trim waits for a write to ride with before
// it is written on its own.
const defaultTrimIdle = time.Second

// writer is the group committer. It does not linger for more records: a
// write takes whatever queued during the previous one, which measured
// better than waiting (FINDINGS.md). A smarter wait was tried too: when
// fewer callers queued than half the last group answered, wait for them,
// at most as long as the last commit took. At 16 callers over HTTP it
// raised creates per fsync from 5.8 to 6.7, but not the rate beyond the
// host's noise (6 alternated pairs of workload 2: +20%, -1%, -4%, -1%,
// +55%, -4%), so it is not here.
func (w *WAL) writer() {
	defer close(w.writerDone)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		var (
			op *walOp
			ok bool
		)
		if w.trimPending() {
			idle.Reset(w.trimIdle)
			select {
			case op, ok = <-w.ops:
				idle.Stop()
			case <-idle.C:
				w.write(nil, 1, 0)
				continue
			}
		} else {
			op, ok = <-w.ops
		}
		if !ok {
			break
		}
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
		w.write(group, n, size)
	}
	// A trim queued just before Close, or one that failed, is written now
	// if it can be; if not, replay and the flusher's reconcile redo it.
	if w.trimPending() {
		w.write(nil, 1, 0)
	}
}

// write makes group durable, in as few transactions as fit (normally one),
// and answers every op that has a waiter. An op is answered nil only once
// all of its entries are committed; the records of an Append are admitted
// to the index before its caller wakes, in seq order.
//
// Trims have no waiter, and need no fsync of their own: a group of trims
// alone is not written but left pending, to ride with the next write, or
// to be written on its own (group nil) when the writer is idle or closing.
func (w *WAL) write(group []*walOp, n, size int) {
	if err := w.broken.Load(); err != nil {
		for _, op := range group {
			w.fail(op, *err)
		}
		return
	}
	waiters := false
	for _, op := range group {
		if op.trim > 0 {
			w.queueTrim(op.trim)
		}
		waiters = waiters || op.done != nil
	}
	if group != nil && !waiters {
		return
	}
	err := w.checkSpace(n, size)
	if err == nil {
		err = w.writeGroup(group)
	}
	if err != nil {
		if !waiters && !w.trimFailing {
			// Nobody else hears of it; once is enough, until a trim works.
			w.log.Warn("wal: trim not written, to be retried", "err", err)
		}
		w.trimFailing = true
		for _, op := range group {
			w.fail(op, err)
		}
		return
	}
	w.trimFailing = false
	w.trim.written, w.trim.dels = w.trim.mark, nil
}

// writeGroup writes the group's entries: the pending trim first, then the
// appends, numbered and packed into entries, then the overrides.
func (w *WAL) writeGroup(group []*walOp) error {
	g := &groupTxn{w: w, group: group, txn: w.db.NewTransaction(true)}
	defer func() { g.txn.Discard() }()

	if w.trim.mark > w.trim.written {
		if err := g.set(trimmedKey, seqValue(w.trim.mark)); err != nil {
			return err
		}
	}
	for _, k := range w.trim.dels {
		if err := g.delete(k); err != nil {
			return err
		}
	}

	p := packer{g: g}
	for _, op := range group {
		if op.recs == nil {
			continue
		}
		body := len(op.enc) - entryHeaderMax
		if body > w.entryMax {
			if err := p.flush(); err != nil {
				return err
			}
			if err := g.setParts(op); err != nil {
				return err
			}
			continue
		}
		if p.bytes+body > w.entryMax {
			if err := p.flush(); err != nil {
				return err
			}
		}
		p.add(op, body)
	}
	if err := p.flush(); err != nil {
		return err
	}

	for _, op := range group {
		if op.override == 0 {
			continue
		}
		key := seqKey(op.override, op.seq)
		bit := uint8(overrideDeleted)
		if op.override == updatedPrefix {
			bit = overrideUpdated
		}
		// Tracked before the commit: if it fails, a trim deletes a key that
		// is not there, which is harmless.
		w.overrides[op.seq] |= bit
		if err := g.set(key, op.value); err != nil {
			return err
		}
		op.written = true
	}
	if g.dirty {
		return g.commit()
	}
	return nil
}

// groupTxn is the Badger transaction a group is written in. When an entry
// does not fit, it commits what it holds, answers the ops that are whole in
// it, and goes on in a new one.
type groupTxn struct {
	w     *WAL
	group []*walOp
	txn   *badger.Txn
	dirty bool
	// vlog is set when the transaction holds a value that Badger puts in
	// its value log.
	vlog bool
}

func (g *groupTxn) set(key, value []byte) error {
	return g.apply(func() error {
		err := g.txn.Set(key, value)
		if err == nil && len(value) >= valueThreshold {
			g.vlog = true
		}
		return err
	})
}

func (g *groupTxn) delete(key []byte) error {
	return g.apply(func() error { return g.txn.Delete(key) })
}

func (g *groupTxn) apply(fn func() error) error {
	err := fn()
	if errors.Is(err, badger.ErrTxnTooBig) && g.dirty {
		if err := g.commit(); err != nil {
			return err
		}
		err = fn()
	}
	if err != nil {
		return err
	}
	g.dirty = true
	g.w.Entries.Add(1)
	return nil
}

// commit commits and syncs the transaction. A sync that fails after the
// commit leaves the write in Badger, to be replayed on the next open if
// the kernel wrote it after all: its outcome is unknown, and a retried
// fsync after a failure proves nothing (the kernel may have dropped the
// pages it could not write). So the WAL breaks: this group and every later
// write get store.ErrBufferFailed, and a restart's replay settles what
// the log holds.
func (g *groupTxn) commit() error {
	start := time.Now()
	err := g.txn.Commit()
	if err == nil {
		if err = g.w.syncer.synced(g.vlog); err != nil {
			err = fmt.Errorf("%w: the write-ahead log failed to sync, so this write may or may not survive a restart, and the node takes no more writes until it restarts: %w", store.ErrBufferFailed, err)
			g.w.broken.CompareAndSwap(nil, &err)
			g.w.log.Error("wal: sync failed; refusing writes until the node restarts", "err", err)
		}
	}
	g.w.syncNanos.Add(int64(time.Since(start)))
	g.w.Commits.Add(1)
	g.txn = g.w.db.NewTransaction(true)
	g.dirty, g.vlog = false, false
	if err != nil {
		return err
	}
	g.w.succeed(g.group)
	return nil
}

// number gives op's records the next seqs.
func (w *WAL) number(op *walOp) {
	for _, r := range op.recs {
		r.seq = w.seq
		w.seq++
	}
}

// setEntry sets the append entry whose first seq is first, with header h
// and value v, and tracks it for trimming. It is tracked even if the commit
// then fails: deleting it later is harmless.
func (g *groupTxn) setEntry(first uint64, h entryHeader, v []byte) error {
	g.w.entries = append(g.w.entries, entrySpan{first, h.last(first)})
	return g.set(seqKey(appendPrefix, first), v)
}

// setParts writes op, an Append too big for one entry, as parts of at most
// entryMax bytes of records each (at least one record).
func (g *groupTxn) setParts(op *walOp) error {
	w := g.w
	h := entryHeader{kind: entryPart, begin: w.seq}
	w.number(op)
	h.end = w.seq - 1
	b := op.enc[entryHeaderMax:]
	for first := h.begin; len(b) > 0; {
		n, count := 0, 0
		for n < len(b) {
			rec, _, _ := nextRecord(b[n:])
			size := recordLenSize + len(rec)
			if count > 0 && n+size > w.entryMax {
				break
			}
			n, count = n+size, count+1
		}
		h.count = count
		v := appendEntryHeader(make([]byte, 0, entryHeaderMax+n), first, h)
		if err := g.setEntry(first, h, append(v, b[:n]...)); err != nil {
			return err
		}
		first += uint64(count)
		b = b[n:]
	}
	op.written = true
	return nil
}

// packer gathers whole appends into one entry.
type packer struct {
	g     *groupTxn
	ops   []*walOp
	first uint64
	bytes int // of the records
	count int
}

func (p *packer) add(op *walOp, body int) {
	if len(p.ops) == 0 {
		p.first = p.g.w.seq
	}
	p.g.w.number(op)
	p.ops = append(p.ops, op)
	p.bytes += body
	p.count += len(op.recs)
}

func (p *packer) flush() error {
	if len(p.ops) == 0 {
		return nil
	}
	h := entryHeader{kind: entryWhole, count: p.count}
	var v []byte
	if len(p.ops) == 1 {
		// The header goes in the room encodeRecords left: no copy.
		var hb [entryHeaderMax]byte
		hdr := appendEntryHeader(hb[:0], p.first, h)
		enc := p.ops[0].enc
		v = enc[entryHeaderMax-len(hdr):]
		copy(v, hdr)
	} else {
		v = appendEntryHeader(make([]byte, 0, entryHeaderMax+p.bytes), p.first, h)
		for _, op := range p.ops {
			v = append(v, op.enc[entryHeaderMax:]...)
		}
	}
	if err := p.g.setEntry(p.first, h, v); err != nil {
		return err
	}
	for _, op := range p.ops {
		op.written = true
	}
	p.ops, p.bytes, p.count = p.ops[:0], 0, 0
	return nil
}

// queueTrim takes a trim to seq into the pending trim: the watermark, and
// the keys wholly at or below it. It raises the next seq above seq, so
// that no record numbered from now on is taken for trimmed.
func (w *WAL) queueTrim(seq uint64) {
	if seq <= w.trim.mark {
		return
	}
	w.trim.mark = seq
	w.seq = max(w.seq, seq+1)
	i := 0
	for ; i < len(w.entries) && w.entries[i].last <= seq; i++ {
		w.trim.dels = append(w.trim.dels, seqKey(appendPrefix, w.entries[i].first))
	}
	w.entries = w.entries[i:]
	for s, kinds := range w.overrides {
		if s > seq {
			continue
		}
		if kinds&overrideDeleted != 0 {
			w.trim.dels = append(w.trim.dels, seqKey(deletedPrefix, s))
		}
		if kinds&overrideUpdated != 0 {
			w.trim.dels = append(w.trim.dels, seqKey(updatedPrefix, s))
		}
		delete(w.overrides, s)
	}
}

func (w *WAL) trimPending() bool {
	return w.trim.mark > w.trim.written || len(w.trim.dels) > 0
}

// succeed answers the ops of group that are written and not answered yet.
// The records of the Appends among them are admitted first, all under one
// lock, in seq order.
func (w *WAL) succeed(group []*walOp) {
	admit := w.admitting[:0]
	for _, op := range group {
		if op.written && !op.answered && op.recs != nil {
			admit = append(admit, op.recs)
		}
	}
	if len(admit) > 0 {
		w.ix.admitMany(admit)
	}
	clear(admit)
	w.admitting = admit
	for _, op := range group {
		if op.written && !op.answered {
			op.answered = true
			op.done <- nil
		}
	}
}

// fail answers op with err, once, if it has a waiter.
func (w *WAL) fail(op *walOp, err error) {
	if op.done == nil || op.answered {
		return
	}
	op.answered = true
	op.done <- walError(err)
}

// walError marks a full disk as store.ErrStorageFull. Badger flattens the
// errors it wraps into text, so the text is checked too.
func walError(err error) error {
	if errors.Is(err, store.ErrStorageFull) || errors.Is(err, store.ErrBufferFailed) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		return fmt.Errorf("wal write: %w: %w", store.ErrStorageFull, err)
	}
	return fmt.Errorf("wal write: %w", err)
}

// spaceReserve is the free space the WAL leaves on its filesystem beyond
// twice what a write adds. Badger writes its memtable log and value log
// through mmap'd sparse files, so a write that finds the filesystem full
// does not get ENOSPC: the process dies of SIGBUS. Refusing writes before
// the disk fills turns a full disk into store.ErrStorageFull.
//
// The reserve is what Badger may write in the background after the writes
// it was given, through mmap'd files too: both memtables flushed to level-0
// tables (2 × 4 MiB), a compaction of level 0 at its stall (15 tables of
// 4 MiB), and a value-log GC rewriting one file (valueLogFileSize, 64 MiB):
// 132 MiB, rounded up. With 1 MiB, a review filled a 14 MiB tmpfs with
// appends until the flush of a memtable died of SIGBUS.
const spaceReserve = 160 << 20

// A statfs per group write costs a syscall and a path walk. While the
// filesystem has plenty of room, checkSpace trusts its last look for
// spaceCheckEvery, or until the writes since then may have taken half of
// what was free. Below spaceCacheMin it looks every time: another process
// filling the disk between two looks would otherwise bring SIGBUS, and it
// would have to write spaceCacheMin/2 in spaceCheckEvery to do so now.
const (
	spaceCheckEvery = 100 * time.Millisecond
	spaceCacheMin   = 256 << 20
)

// spaceCache is checkSpace's last look at the filesystem.
type spaceCache struct {
	at   time.Time
	free int64 // bytes free then; 0 to look again
	used int64 // bytes the writes since then may have taken
}

// checkSpace fails a write of n entries and size payload bytes that would
// leave the WAL's filesystem with less than spaceReserve free.
func (w *WAL) checkSpace(n, size int) error {
	adds := 2 * int64(size+256*n)
	need := adds + spaceReserve
	c := &w.space
	if c.free >= spaceCacheMin && c.used+need <= c.free/2 && time.Since(c.at) < spaceCheckEvery {
		c.used += adds
		return nil
	}
	free, err := w.freeSpace(w.cfg.Dir)
	if err != nil {
		c.free = 0
		return nil // cannot tell: let the write try
	}
	*c = spaceCache{at: time.Now(), free: free, used: adds}
	if free < need {
		c.free = 0
		return fmt.Errorf("wal write: %w: %d bytes free in %s, under the %d this write needs", store.ErrStorageFull, free, w.cfg.Dir, need)
	}
	return nil
}

// statfsFree is the space free to unprivileged users on dir's filesystem.
func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
