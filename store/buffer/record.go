package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// recordVersion is the first byte of every encoded record. A change to the
// layout gets a new version, and decodeRecord keeps reading the old ones, so
// a WAL written by an older SMQ replays after an upgrade.
const recordVersion = 1

// The Unix seconds of 0001-01-01 and 9999-12-31T23:59:59 UTC.
const (
	minUnix = -62135596800
	maxUnix = 253402300799
)

// errCorrupt is what decodeRecord returns for bytes it did not write.
var errCorrupt = errors.New("corrupt record")

// encodeRecord appends the binary form of m to dst. Layout (version 1):
// version byte, id (16 bytes), then channel, payload, status as
// length-prefixed bytes, scheduled_at, attempts, max_attempts, lease token
// (16 bytes), leased_until, acquired_at, created_at, updated_at, then region,
// dedup key, original channel, last error. Integers are varints; a time is a
// zero byte for the zero time, or 1, Unix seconds and nanoseconds.
func encodeRecord(dst []byte, m *store.Message) []byte {
	dst = append(dst, recordVersion)
	dst = append(dst, m.ID[:]...)
	dst = appendBytes(dst, []byte(m.Channel))
	dst = appendBytes(dst, m.Payload)
	dst = appendBytes(dst, []byte(m.Status))
	dst = appendTime(dst, m.ScheduledAt)
	dst = binary.AppendVarint(dst, int64(m.Attempts))
	dst = binary.AppendVarint(dst, int64(m.MaxAttempts))
	dst = append(dst, m.LeaseToken[:]...)
	dst = appendTime(dst, m.LeasedUntil)
	dst = appendTime(dst, m.AcquiredAt)
	dst = appendTime(dst, m.CreatedAt)
	dst = appendTime(dst, m.UpdatedAt)
	dst = appendBytes(dst, []byte(m.Region))
	dst = appendBytes(dst, []byte(m.DedupKey))
	dst = appendBytes(dst, []byte(m.OriginalChannel))
	dst = appendBytes(dst, []byte(m.LastError))
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// decodeRecord parses what encodeRecord wrote. Times come back in UTC. The
// message does not alias b.
func decodeRecord(b []byte) (*store.Message, error) {
	d := decoder{b: b}
	if v := d.byte(); v != recordVersion {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: unknown version %d", errCorrupt, v)
	}
	m := &store.Message{}
	m.ID = d.uuid()
	m.Channel = string(d.bytes())
	if p := d.bytes(); len(p) > 0 {
		m.Payload = append([]byte(nil), p...)
	}
	m.Status = store.Status(d.bytes())
	m.ScheduledAt = d.time()
	m.Attempts = d.int()
	m.MaxAttempts = d.int()
	m.LeaseToken = d.uuid()
	m.LeasedUntil = d.time()
	m.AcquiredAt = d.time()
	m.CreatedAt = d.time()
	m.UpdatedAt = d.time()
	m.Region = string(d.bytes())
	m.DedupKey = string(d.bytes())
	m.OriginalChannel = string(d.bytes())
	m.LastError = string(d.bytes())
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return m, nil
}

// decoder reads b front to back; after the first error every read returns
// a zero value and err keeps that error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("length")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uuid() uuid.UUID {
	var u uuid.UUID
	if len(d.b) < len(u) {
		d.fail("uuid")
		return u
	}
	d.b = d.b[copy(u[:], d.b):]
	return u
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int {
	v := d.varint()
	if v < math.MinInt || v > math.MaxInt {
		d.fail("integer")
		return 0
	}
	return int(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		// Years 1 to 9999: beyond them time.Unix overflows and the value
		// would not encode back to itself.
		if nsec >= uint64(time.Second) || sec < minUnix || sec > maxUnix {
			d.fail("time")
			return time.Time{}
		}
		t := time.Unix(sec, int64(nsec)).UTC()
		if t.IsZero() {
			// The zero time has its own encoding; a 1 that decodes to it
			// was not written by encodeRecord.
			d.fail("time")
		}
		return t
	default:
		d.fail("time")
		return time.Time{}
	}
}
