package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smq/smq/store"
)

// messageOIDs are the types of messageCols' columns, in order.
var messageOIDs = [...]uint32{
	pgtype.UUIDOID, pgtype.TextOID, pgtype.ByteaOID, pgtype.TextOID, pgtype.TimestamptzOID, pgtype.Int4OID,
	pgtype.Int4OID, pgtype.UUIDOID, pgtype.TimestamptzOID, pgtype.TimestamptzOID, pgtype.TimestamptzOID,
	pgtype.TimestamptzOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID,
}

// rawFields reports whether rows of these fields can be read by
// rawMessages: the columns of messageCols, each in binary form (text's
// binary form is its text).
func rawFields(fields []pgconn.FieldDescription) bool {
	if len(fields) != len(messageOIDs) {
		return false
	}
	for i, f := range fields {
		if f.DataTypeOID != messageOIDs[i] || f.DataTypeOID != pgtype.TextOID && f.Format != pgx.BinaryFormatCode {
			return false
		}
	}
	return true
}

// rawMessages reads rows of messageCols from their wire bytes, as copyRows
// writes them. pgx's Scan took a fifth of the node's CPU in a drain (19%
// in scanMessage), most of it formatting each uuid as text for
// uuid.UUID's sql.Scanner to parse it back. The result is what
// scanMessage returns (TestRawMessagesReadsWhatScanReads).
type rawMessages struct {
	// channel and region are the last ones read: the rows of a poll share
	// them, and reuse one string instead of allocating their own.
	channel, region string
	err             error
}

// message decodes one row's values (pgx.Rows.RawValues).
func (d *rawMessages) message(vals [][]byte) (*store.Message, error) {
	if len(vals) != len(messageOIDs) {
		return nil, fmt.Errorf("message row of %d values, want %d", len(vals), len(messageOIDs))
	}
	d.err = nil
	m := &store.Message{
		ID:              d.uuid(vals[0], false),
		Channel:         reuse(&d.channel, vals[1]),
		Payload:         d.bytes(vals[2]),
		Status:          status(vals[3]),
		ScheduledAt:     d.time(vals[4], false),
		Attempts:        d.int4(vals[5]),
		MaxAttempts:     d.int4(vals[6]),
		LeaseToken:      d.uuid(vals[7], true),
		LeasedUntil:     d.time(vals[8], true),
		AcquiredAt:      d.time(vals[9], true),
		CreatedAt:       d.time(vals[10], false),
		UpdatedAt:       d.time(vals[11], false),
		Region:          reuse(&d.region, vals[12]),
		DedupKey:        string(vals[13]),
		OriginalChannel: string(vals[14]),
		LastError:       string(vals[15]),
	}
	if d.err != nil {
		return nil, fmt.Errorf("message row: %w", d.err)
	}
	return m, nil
}

func (d *rawMessages) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// reuse returns b as a string: *last itself when they are equal.
func reuse(last *string, b []byte) string {
	if string(b) != *last {
		*last = string(b)
	}
	return *last
}

// status returns the Status a value names, without allocating for the
// three that exist.
func status(b []byte) store.Status {
	for _, s := range [...]store.Status{store.StatusReady, store.StatusAcquired, store.StatusPending} {
		if string(b) == string(s) {
			return s
		}
	}
	return store.Status(b)
}

func (d *rawMessages) bytes(b []byte) []byte {
	if b == nil {
		d.fail(errors.New("payload is NULL"))
	}
	return append([]byte{}, b...)
}

func (d *rawMessages) uuid(b []byte, nullable bool) (id [16]byte) {
	switch {
	case b == nil && nullable:
	case len(b) != 16:
		d.fail(fmt.Errorf("uuid of %d bytes", len(b)))
	default:
		copy(id[:], b)
	}
	return id
}

func (d *rawMessages) int4(b []byte) int {
	if len(b) != 4 {
		d.fail(fmt.Errorf("int4 of %d bytes", len(b)))
		return 0
	}
	return int(int32(binary.BigEndian.Uint32(b)))
}

// time reads a timestamptz as pgx does: microseconds since 2000-01-01 UTC,
// as a time in the local zone. A NULL is the zero time where the column
// may be NULL; infinity is refused, as pgx refuses it for a time.Time.
func (d *rawMessages) time(b []byte, nullable bool) time.Time {
	switch {
	case b == nil && nullable:
		return time.Time{}
	case len(b) != 8:
		d.fail(fmt.Errorf("timestamptz of %d bytes", len(b)))
		return time.Time{}
	}
	usec := int64(binary.BigEndian.Uint64(b))
	if usec == 1<<63-1 || usec == -1<<63 {
		d.fail(errors.New("timestamptz is infinite"))
		return time.Time{}
	}
	// Split as pgx splits it, so that no sum overflows.
	return time.Unix(usecUnixToY2K/1_000_000+usec/1_000_000, usecUnixToY2K%1_000_000*1_000+usec%1_000_000*1_000)
}
