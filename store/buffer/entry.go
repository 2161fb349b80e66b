package buffer

import (
	"encoding/binary"
	"fmt"
	"math"
)

// An append entry is the value of one Badger key, appendPrefix and the seq
// of its first record: records with consecutive seqs, each in the encoding
// of encodeRecord. The writer packs every Append of a group commit into as
// few entries as the size bound allows, so Badger's work (a skiplist node,
// a checksum, a log header, and later one delete) is per group, not per
// message.
//
// Layout (version 1): version byte, kind byte, then for a part the append's
// first and last seq as uvarint distances from the entry's first seq
// (below and above), then the record count as a uvarint, then each record
// as a 4-byte big-endian length and the record.
const entryVersion = 1

// Entry kinds.
const (
	// entryWhole holds whole appends only: it is valid whenever it exists.
	entryWhole = 0
	// entryPart holds part of one append too big for one entry, and
	// nothing else. Parts may be written in several Badger transactions, so
	// a crash can leave some of them: the append counts only if every part
	// is there (parts below the trimmed watermark aside).
	entryPart = 1
)

// entryHeaderMax bounds an encoded header: two bytes and three uvarints.
const entryHeaderMax = 2 + 3*binary.MaxVarintLen64

// recordLenSize is the size of the length before each record.
const recordLenSize = 4

// entryHeader describes an append entry whose first record has seq first.
type entryHeader struct {
	kind  byte
	count int
	// begin and end are the first and last seq of the append a part
	// belongs to; for a whole entry, its own first and last seq.
	begin, end uint64
}

func (h entryHeader) last(first uint64) uint64 { return first + uint64(h.count) - 1 }

// appendEntryHeader appends the header h of an entry whose first seq is
// first.
func appendEntryHeader(dst []byte, first uint64, h entryHeader) []byte {
	dst = append(dst, entryVersion, h.kind)
	if h.kind == entryPart {
		dst = binary.AppendUvarint(dst, first-h.begin)
		dst = binary.AppendUvarint(dst, h.end-first)
	}
	return binary.AppendUvarint(dst, uint64(h.count))
}

// encodeRecords encodes the messages of recs for an append entry, after
// entryHeaderMax bytes of room for the header, so that an append that is
// an entry of its own needs no copy.
func encodeRecords(recs []*record) []byte {
	n := entryHeaderMax
	for _, r := range recs {
		n += recordLenSize + recordSizeHint(r)
	}
	b := make([]byte, entryHeaderMax, n)
	for _, r := range recs {
		at := len(b)
		b = encodeRecord(append(b, 0, 0, 0, 0), r.msg)
		binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-recordLenSize))
	}
	return b
}

// recordSizeHint is about what encodeRecord takes for r, rarely less.
func recordSizeHint(r *record) int {
	m := r.msg
	return 96 + len(m.Payload) + len(m.Channel) + len(m.Status) + len(m.Region) + len(m.DedupKey) +
		len(m.OriginalChannel) + len(m.LastError)
}

// nextRecord splits the first length-prefixed record off b.
func nextRecord(b []byte) (rec, rest []byte, ok bool) {
	if len(b) < recordLenSize {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	b = b[recordLenSize:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// decodeEntry parses the value of the append entry whose first seq is
// first. The records alias v.
func decodeEntry(first uint64, v []byte) (entryHeader, [][]byte, error) {
	var h entryHeader
	bad := func(what string) (entryHeader, [][]byte, error) {
		return entryHeader{}, nil, fmt.Errorf("%w: append entry %d: bad %s", errCorrupt, first, what)
	}
	if len(v) < 2 {
		return bad("header")
	}
	if v[0] != entryVersion {
		return entryHeader{}, nil, fmt.Errorf("%w: append entry %d: unknown version %d", errCorrupt, first, v[0])
	}
	h.kind = v[1]
	d := decoder{b: v[2:]}
	switch h.kind {
	case entryWhole:
	case entryPart:
		below, above := d.uvarint(), d.uvarint()
		if d.err != nil || below > first || above > math.MaxUint64-first {
			return bad("part bounds")
		}
		h.begin, h.end = first-below, first+above
	default:
		return bad("kind")
	}
	count := d.uvarint()
	// Each record takes at least its length, which bounds a count that
	// would otherwise make a huge slice.
	if d.err != nil || count == 0 || count > uint64(len(d.b))/recordLenSize || count-1 > math.MaxUint64-first {
		return bad("count")
	}
	h.count = int(count)
	if h.kind == entryWhole {
		h.begin, h.end = first, h.last(first)
	} else if h.end < h.last(first) {
		return bad("part bounds")
	}
	recs := make([][]byte, h.count)
	b := d.b
	for i := range recs {
		var ok bool
		if recs[i], b, ok = nextRecord(b); !ok {
			return bad("record length")
		}
	}
	if len(b) != 0 {
		return bad("length: trailing bytes")
	}
	return h, recs, nil
}
