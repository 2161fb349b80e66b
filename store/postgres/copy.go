package postgres

import (
	"encoding/binary"
	"time"
)

// copyRows is the body of a COPY … FROM STDIN (FORMAT binary), built by
// hand: pgx's CopyFrom looks up an encode plan for every value, which took
// a quarter of the node's CPU during a bulk ingest (23% in buildCopyBuf),
// more than the rest of the flush. The format is PostgreSQL's (COPY,
// "Binary Format"): a header, then per row a field count and each field as
// a length and its bytes in the type's binary form, then a trailer.
type copyRows struct {
	b []byte
}

// copySignature starts every binary COPY; flags and header extension
// length (both 0) follow.
const copySignature = "PGCOPY\n\xff\r\n\x00"

func newCopyRows(sizeHint int) *copyRows {
	c := &copyRows{b: make([]byte, 0, sizeHint)}
	c.b = append(c.b, copySignature...)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // flags
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // header extension length
	return c
}

// row starts a row of n fields.
func (c *copyRows) row(n int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(n)) }

// varlen appends a field of v's bytes: bytea, text (whose binary form is
// its UTF-8 bytes) or uuid (its 16 bytes).
func varlen[T string | []byte](c *copyRows, v T) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(v)))
	c.b = append(c.b, v...)
}

func (c *copyRows) bytes(v []byte)  { varlen(c, v) }
func (c *copyRows) text(v string)   { varlen(c, v) }
func (c *copyRows) uuid(v [16]byte) { varlen(c, v[:]) }

func (c *copyRows) int4(v int32) {
	c.b = binary.BigEndian.AppendUint32(c.b, 4)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(v))
}

// usecUnixToY2K is the microseconds from 1970-01-01 to 2000-01-01 UTC,
// PostgreSQL's epoch for timestamps.
const usecUnixToY2K = 946684800 * 1000000

// timestamptz writes t as microseconds since 2000-01-01 UTC, rounding
// down as pgx does.
func (c *copyRows) timestamptz(t time.Time) {
	usec := t.Unix()*1000000 + int64(t.Nanosecond())/1000
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(usec-usecUnixToY2K))
}

// done appends the trailer and returns the body.
func (c *copyRows) done() []byte { return binary.BigEndian.AppendUint16(c.b, 0xffff) }
