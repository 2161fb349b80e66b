package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/smq/smq/store"
)

// replayState is what replay gathers while it reads the WAL in key order.
type replayState struct {
	trimmed uint64
	recs    []*record // of the valid entries, above trimmed, in seq order
	entries []entrySpan
	stale   [][]byte // keys to delete: trimmed, or of an append cut short
	maxSeq  uint64
	deleted map[uint64][]byte // seq → tombstone key
	updated map[uint64]*store.Message
	updKeys map[uint64][]byte
	// split holds the parts read so far of an append too big for one
	// entry; it counts only once its last record is read.
	split *splitAppend
}

type splitAppend struct {
	begin, end, next uint64
	recs             []*record
	entries          []entrySpan
	keys             [][]byte
}

// replay loads the records into the index, the entries and overrides into
// the writer's state, and sets the next seq. It deletes what is stale:
// entries wholly trimmed, the parts of an append a crash cut short, and
// overrides of records that are no longer there.
func (w *WAL) replay() error {
	st := replayState{
		deleted: map[uint64][]byte{},
		updated: map[uint64]*store.Message{},
		updKeys: map[uint64][]byte{},
	}
	err := w.db.View(func(txn *badger.Txn) error {
		var err error
		if st.trimmed, err = readSeq(txn, trimmedKey); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.KeyCopy(nil)
			if bytes.Equal(key, trimmedKey) {
				continue
			}
			if len(key) != 1+8 {
				return unknownKey(key)
			}
			seq := binary.BigEndian.Uint64(key[1:])
			switch key[0] {
			case appendPrefix:
				err = item.Value(func(v []byte) error { return st.entry(key, seq, v) })
			case deletedPrefix:
				st.deleted[seq] = key
			case updatedPrefix:
				st.updKeys[seq] = key
				err = item.Value(func(v []byte) error {
					m, err := decodeRecord(v)
					st.updated[seq] = m
					return err
				})
			default:
				return unknownKey(key)
			}
			if err != nil {
				return fmt.Errorf("key %q: %w", key, err)
			}
		}
		st.endSplit(false)
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	recs, err := st.applyOverrides(w.overrides)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if len(st.stale) > 0 {
		w.log.Warn("wal: dropping entries trimmed, or of an append cut short", "count", len(st.stale))
		if err := w.deleteKeys(st.stale); err != nil {
			return fmt.Errorf("replay: drop stale entries: %w", err)
		}
	}
	w.entries = st.entries
	w.trim.mark, w.trim.written = st.trimmed, st.trimmed
	w.ix.depth = len(recs)
	for _, r := range recs {
		w.ix.bytes += r.size
	}
	w.ix.admit(recs, false)
	// Sequences never go back: not below what the WAL holds, trimmed or
	// numbered for an append cut short, and not below the clock, because
	// the database keeps this node's flush watermark (Store.FlushMark) and a
	// fresh or emptied WAL directory must not hand out a seq at or below an
	// old watermark, or the flusher would discard new records as already
	// flushed.
	w.seq = max(st.maxSeq+1, st.trimmed+1, uint64(time.Now().UnixNano()))
	return nil
}

func unknownKey(key []byte) error {
	return fmt.Errorf("unknown key %q: the directory is not a WAL of this SMQ version's layout", key)
}

// entry takes the append entry key, whose first seq is first.
func (st *replayState) entry(key []byte, first uint64, v []byte) error {
	h, raw, err := decodeEntry(first, v)
	if err != nil {
		return err
	}
	last := h.last(first)
	st.maxSeq = max(st.maxSeq, h.end)
	span := entrySpan{first, last}
	if s := st.split; s != nil && !(h.kind == entryPart && h.begin == s.begin && h.end == s.end && first == s.next) {
		st.endSplit(false)
	}
	if last <= st.trimmed {
		st.stale = append(st.stale, key)
		return nil
	}
	recs, err := decodeEntryRecords(first, raw, st.trimmed)
	if err != nil {
		return err
	}
	if h.kind == entryWhole {
		st.recs = append(st.recs, recs...)
		st.entries = append(st.entries, span)
		return nil
	}
	s := st.split
	if s == nil {
		// The first part of an append, or the first not trimmed.
		if first != h.begin && first-1 > st.trimmed {
			st.stale = append(st.stale, key)
			return nil
		}
		s = &splitAppend{begin: h.begin, end: h.end}
		st.split = s
	}
	s.recs = append(s.recs, recs...)
	s.entries = append(s.entries, span)
	s.keys = append(s.keys, key)
	s.next = last + 1
	if last == h.end {
		st.endSplit(true)
	}
	return nil
}

// endSplit ends the split append being read: its records count if it is
// complete, and its parts are dropped if not.
func (st *replayState) endSplit(complete bool) {
	s := st.split
	if s == nil {
		return
	}
	st.split = nil
	if complete {
		st.recs = append(st.recs, s.recs...)
		st.entries = append(st.entries, s.entries...)
		return
	}
	st.stale = append(st.stale, s.keys...)
}

// decodeEntryRecords decodes the records of an entry above trimmed.
func decodeEntryRecords(first uint64, raw [][]byte, trimmed uint64) ([]*record, error) {
	recs := make([]*record, 0, len(raw))
	for i, b := range raw {
		seq := first + uint64(i)
		if seq <= trimmed {
			continue
		}
		m, err := decodeRecord(b)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", seq, err)
		}
		recs = append(recs, &record{seq: seq, msg: m, size: int64(len(m.Payload))})
	}
	return recs, nil
}

// applyOverrides applies the tombstones and updates to the records and
// returns those left. The overrides of records it holds go into overrides;
// the others are stale.
func (st *replayState) applyOverrides(overrides map[uint64]uint8) ([]*record, error) {
	find := func(seq uint64) *record {
		i, ok := slices.BinarySearchFunc(st.recs, seq, func(r *record, seq uint64) int {
			switch {
			case r.seq < seq:
				return -1
			case r.seq > seq:
				return 1
			}
			return 0
		})
		if !ok {
			return nil
		}
		return st.recs[i]
	}
	for seq, m := range st.updated {
		r := find(seq)
		if r == nil {
			st.stale = append(st.stale, st.updKeys[seq])
			continue
		}
		if m.ID != r.msg.ID {
			return nil, fmt.Errorf("update of record %d: %w: id %s, not %s", seq, errCorrupt, m.ID, r.msg.ID)
		}
		r.msg, r.size = m, int64(len(m.Payload))
		overrides[seq] |= overrideUpdated
	}
	gone := map[uint64]bool{}
	for seq, key := range st.deleted {
		if find(seq) == nil {
			st.stale = append(st.stale, key)
			continue
		}
		gone[seq] = true
		overrides[seq] |= overrideDeleted
	}
	if len(gone) == 0 {
		return st.recs, nil
	}
	return slices.DeleteFunc(st.recs, func(r *record) bool { return gone[r.seq] }), nil
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
	if err := wb.Flush(); err != nil {
		return err
	}
	return w.syncer.synced(false)
}
