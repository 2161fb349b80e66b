package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// errNotInFlight is what Commit returns for a batch that Next did not hand
// out, or that was released or committed already.
var errNotInFlight = errors.New("batch not in flight")

// record is one buffered message.
type record struct {
	seq uint64
	// msg is replaced by Update, never changed in place, so a Batch can
	// hand it out without a copy.
	msg  *store.Message
	size int64 // len(msg.Payload)
	// prev and next link the records of the index in seq order.
	prev, next *record
	// busy is set while a Delete or Update of the record is being written.
	// Next stops before a busy record (its fate is not known yet) and
	// other changes of it wait.
	busy bool
}

// newRecords copies msgs into records. The records of one call and their
// copies share one allocation: they are appended and flushed together.
func newRecords(msgs []*store.Message) []*record {
	type recordWithMessage struct {
		r record
		m store.Message
	}
	recs := make([]*record, len(msgs))
	rms := make([]recordWithMessage, len(msgs))
	for i, m := range msgs {
		rm := &rms[i]
		rm.m = *m
		rm.r = record{msg: &rm.m, size: int64(len(m.Payload))}
		recs[i] = &rm.r
	}
	return recs
}

// recordList is a doubly linked list of records, linked through the
// records themselves so that a record costs no list element of its own.
type recordList struct{ front, back *record }

func (l *recordList) pushBack(r *record) {
	r.prev, r.next = l.back, nil
	if l.back != nil {
		l.back.next = r
	} else {
		l.front = r
	}
	l.back = r
}

func (l *recordList) remove(r *record) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		l.front = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		l.back = r.prev
	}
	r.prev, r.next = nil, nil
}

// index is the in-memory state both buffers share: the records by id and
// in sequence order, the capacity accounting and the one batch in flight.
// The WAL makes its changes durable before applying them here, so the
// index never reads the disk.
type index struct {
	kind     string
	maxDepth int
	maxBytes int64

	// notify is Appended's channel, due is Due's: capacity 1, sent to
	// without blocking.
	notify chan struct{}
	due    chan struct{}

	mu    sync.Mutex // guards the fields below
	byID  map[uuid.UUID]*record
	order recordList // by seq
	// depth and bytes count records and their payload bytes, appends that
	// reserved room but are not admitted yet included, so that concurrent
	// appends never overshoot the capacity together.
	depth int
	bytes int64
	// nextSeq numbers the records of the memory buffer; the WAL numbers
	// its own in its writer.
	nextSeq uint64
	// inflight is the batch taken by Next (or being dropped by Discard):
	// every record with seq ≤ inflight.Seq belongs to it and cannot change.
	inflight *store.Batch
	// changed is closed and replaced whenever a record leaves flight or
	// stops being busy, waking the Deletes, Updates and Discards that wait.
	changed chan struct{}
}

func newIndex(kind string, maxDepth int, maxBytes int64) *index {
	return &index{
		kind:     kind,
		maxDepth: maxDepth,
		maxBytes: maxBytes,
		notify:   make(chan struct{}, 1),
		due:      make(chan struct{}, 1),
		byID:     make(map[uuid.UUID]*record),
		changed:  make(chan struct{}),
	}
}

func (ix *index) signal() { poke(ix.notify) }

// dueWithin is how soon a message must fall due for its append or update
// to signal Due: it then reaches the database at once rather than after
// the flusher's linger (at most 100 ms, as the node configures it).
const dueWithin = 250 * time.Millisecond

// dueSoon is the time before which a message falls due within dueWithin.
func dueSoon() time.Time { return time.Now().Add(dueWithin) }

// poke sends to a channel of capacity 1 without blocking.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes every waiter; ix.mu must be held.
func (ix *index) broadcastLocked() {
	close(ix.changed)
	ix.changed = make(chan struct{})
}

// reserve takes room for recs, or returns ErrBufferFull and takes nothing.
func (ix *index) reserve(recs []*record) error {
	var size int64
	for _, r := range recs {
		size += r.size
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.depth+len(recs) > ix.maxDepth || ix.bytes+size > ix.maxBytes {
		return store.ErrBufferFull
	}
	ix.depth += len(recs)
	ix.bytes += size
	return nil
}

// unreserve gives back the room of recs that were never admitted.
func (ix *index) unreserve(recs []*record) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, r := range recs {
		ix.depth--
		ix.bytes -= r.size
	}
}

// admit makes reserved records visible. Their seqs must be higher than any
// admitted before (so that a batch's watermark is exact); with number set,
// admit assigns them.
func (ix *index) admit(recs []*record, number bool) {
	soon := dueSoon()
	ix.mu.Lock()
	due := ix.admitLocked(recs, number, soon)
	ix.mu.Unlock()
	if due {
		poke(ix.due)
	}
	ix.signal()
}

// admitMany admits the records of several appends, in order, under one
// lock.
func (ix *index) admitMany(groups [][]*record) {
	soon, due := dueSoon(), false
	ix.mu.Lock()
	for _, recs := range groups {
		due = ix.admitLocked(recs, false, soon) || due
	}
	ix.mu.Unlock()
	if due {
		poke(ix.due)
	}
	ix.signal()
}

// admitLocked admits recs and reports whether one of them is scheduled
// before soon.
func (ix *index) admitLocked(recs []*record, number bool, soon time.Time) (due bool) {
	for _, r := range recs {
		if number {
			r.seq = ix.nextSeq
			ix.nextSeq++
		}
		ix.order.pushBack(r)
		ix.byID[r.msg.ID] = r
		due = due || r.msg.ScheduledAt.Before(soon)
	}
	return due
}

func (ix *index) inFlightLocked(r *record) bool {
	return ix.inflight != nil && r.seq <= ix.inflight.Seq
}

func (ix *index) removeLocked(r *record) {
	delete(ix.byID, r.msg.ID)
	ix.order.remove(r)
	ix.depth--
	ix.bytes -= r.size
}

func (ix *index) get(id uuid.UUID) (*store.Message, bool) {
	ix.mu.Lock()
	r, ok := ix.byID[id]
	ix.mu.Unlock()
	if !ok {
		return nil, false
	}
	return cloneMessage(r.msg), true
}

func cloneMessage(m *store.Message) *store.Message {
	cp := *m
	cp.Payload = bytes.Clone(m.Payload)
	return &cp
}

// acquire waits until the record of id is neither in flight nor busy and
// marks it busy; the caller must end with finish. It returns nil when the
// buffer does not hold the record (any more).
func (ix *index) acquire(ctx context.Context, id uuid.UUID) (*record, error) {
	ix.mu.Lock()
	for {
		r, ok := ix.byID[id]
		if !ok {
			ix.mu.Unlock()
			return nil, nil
		}
		if !r.busy && !ix.inFlightLocked(r) {
			r.busy = true
			ix.mu.Unlock()
			return r, nil
		}
		changed := ix.changed
		ix.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ix.mu.Lock()
	}
}

// finish ends what acquire began: it removes r, or replaces its message
// with msg when msg is set, or leaves it as it was.
func (ix *index) finish(r *record, remove bool, msg *store.Message) {
	ix.mu.Lock()
	switch {
	case remove:
		ix.removeLocked(r)
	case msg != nil:
		size := int64(len(msg.Payload))
		ix.bytes += size - r.size
		r.msg, r.size = msg, size
	}
	r.busy = false
	ix.broadcastLocked()
	ix.mu.Unlock()
	if msg != nil && msg.ScheduledAt.Before(dueSoon()) {
		poke(ix.due)
	}
	// Next may have stopped before r while it was busy.
	ix.signal()
}

// update runs fn on a copy of r's message for Update.
func update(r *record, fn func(*store.Message)) (*store.Message, error) {
	m := cloneMessage(r.msg)
	fn(m)
	if m.ID != r.msg.ID {
		return nil, fmt.Errorf("update of %s changed its id", r.msg.ID)
	}
	return m, nil
}

func (ix *index) next(limit int) *store.Batch {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.inflight != nil || limit <= 0 {
		return nil
	}
	n := min(limit, ix.depth)
	b := store.Batch{Messages: make([]*store.Message, 0, n), Seqs: make([]uint64, 0, n)}
	for r := ix.order.front; r != nil && len(b.Messages) < limit; r = r.next {
		// Stopping at a busy record keeps the watermark exact: every live
		// record up to b.Seq is in the batch.
		if r.busy {
			break
		}
		b.Messages = append(b.Messages, r.msg)
		b.Seqs = append(b.Seqs, r.seq)
		b.Seq = r.seq
	}
	if len(b.Messages) == 0 {
		return nil
	}
	ix.inflight = &b
	return &b
}

// inFlightRecordsLocked lists the records of the batch in flight.
func (ix *index) inFlightRecordsLocked() []*record {
	recs := make([]*record, 0, len(ix.inflight.Messages))
	for r := ix.order.front; r != nil; r = r.next {
		if r.seq > ix.inflight.Seq {
			break
		}
		recs = append(recs, r)
	}
	return recs
}

// commit drops the records of b, the batch in flight, once drop (nil for
// memory) made that durable. On an error b stays in flight.
func (ix *index) commit(b *store.Batch, drop func([]*record) error) error {
	ix.mu.Lock()
	if b == nil || ix.inflight != b {
		ix.mu.Unlock()
		return errNotInFlight
	}
	recs := ix.inFlightRecordsLocked()
	ix.mu.Unlock()
	if drop != nil {
		if err := drop(recs); err != nil {
			return err
		}
	}
	ix.mu.Lock()
	for _, r := range recs {
		ix.removeLocked(r)
	}
	ix.inflight = nil
	ix.broadcastLocked()
	ix.mu.Unlock()
	return nil
}

func (ix *index) release(b *store.Batch) {
	ix.mu.Lock()
	if b == nil || ix.inflight != b {
		ix.mu.Unlock()
		return
	}
	ix.inflight = nil
	ix.broadcastLocked()
	ix.mu.Unlock()
	ix.signal()
}

// discard drops every record with seq ≤ seq. It takes them as a batch in
// flight (waiting for the batch of Next to end and for busy records to
// settle), so Delete and Update wait for it as for a flush and then find
// the records gone. The memory buffer's next seq rises above seq, as the
// WAL's does: a flush skips what is at or below its node's mark, so a
// record numbered there (a restart with the same node id after the clock
// went back) would never reach the database.
func (ix *index) discard(ctx context.Context, seq uint64, drop func([]*record) error) error {
	ix.mu.Lock()
	ix.nextSeq = max(ix.nextSeq, seq+1)
	for ix.inflight != nil || ix.busyUpToLocked(seq) {
		changed := ix.changed
		ix.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
		ix.mu.Lock()
	}
	b := &store.Batch{Seq: seq}
	ix.inflight = b
	ix.mu.Unlock()
	err := ix.commit(b, drop)
	if err != nil {
		ix.release(b)
	}
	return err
}

func (ix *index) busyUpToLocked(seq uint64) bool {
	for r := ix.order.front; r != nil; r = r.next {
		if r.seq > seq {
			return false
		}
		if r.busy {
			return true
		}
	}
	return false
}

func (ix *index) stats() store.BufferStats {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return store.BufferStats{
		Kind:     ix.kind,
		Depth:    ix.depth,
		Ready:    len(ix.byID),
		Bytes:    ix.bytes,
		MaxDepth: ix.maxDepth,
		MaxBytes: ix.maxBytes,
	}
}
