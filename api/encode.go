package api

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
)

// jsonFormat is Huma's JSON format (encoding/json, HTML not escaped) with
// a shortcut for the create and poll responses: a body that writes its own
// JSON (a jsonAppender) is written as it writes it. encoding/json would
// reach it by reflection, call MarshalJSON on each time and id, and compact
// each result again; for the 1000 results of a batch create that was over
// half of the request's CPU, and for polls of 100 during a drain a quarter
// of the node's.
var jsonFormat = huma.Format{
	Marshal:   marshalJSON,
	Unmarshal: huma.DefaultJSONFormat.Unmarshal,
}

// jsonAppender is a response body that appends its JSON to b, exactly as
// encoding/json would write it.
type jsonAppender interface {
	appendJSON(b []byte) ([]byte, error)
}

// jsonBuffers holds buffers for marshalJSON.
var jsonBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledJSON is the largest buffer marshalJSON keeps for reuse: that
// of a batch create's answer, about 150 bytes per message.
const maxPooledJSON = 256 << 10

func marshalJSON(w io.Writer, v any) error {
	if a, ok := v.(jsonAppender); ok {
		buf := jsonBuffers.Get().(*[]byte)
		b, err := a.appendJSON((*buf)[:0])
		if err == nil {
			// encoding/json's Encoder ends each value with a newline.
			b = append(b, '\n')
			_, err = w.Write(b)
			if cap(b) <= maxPooledJSON {
				*buf = b
				jsonBuffers.Put(buf)
			}
			return err
		}
		// Let encoding/json report what it cannot encode.
	}
	return huma.DefaultJSONFormat.Marshal(w, v)
}

var (
	_ jsonAppender = CreatedMessage{}
	_ jsonAppender = BatchResults{}
	_ jsonAppender = PollOutputBody{}
)

func (m CreatedMessage) appendJSON(b []byte) ([]byte, error) {
	j := jsonBuf{b: b}
	j.lit(`{"message_id":`)
	j.uuid(m.MessageID)
	j.lit(`,"channel":`)
	j.str(m.Channel)
	j.lit(`,"scheduled_at":`)
	j.time(m.ScheduledAt)
	j.lit(`,"created_at":`)
	j.time(m.CreatedAt)
	j.lit(`}`)
	return j.done()
}

func (r BatchResults) appendJSON(b []byte) ([]byte, error) {
	j := jsonBuf{b: b}
	// The results of a batch share their created_at, and often their
	// scheduled_at.
	var scheduled, created timeCache
	appendList(&j, "results", r.Results, func(j *jsonBuf, r *BatchResult) {
		j.lit(`{"message_id":`)
		j.uuid(r.MessageID)
		j.lit(`,"channel":`)
		j.str(r.Channel)
		if r.ScheduledAt != nil {
			j.lit(`,"scheduled_at":`)
			j.cachedTime(&scheduled, *r.ScheduledAt)
		}
		if r.CreatedAt != nil {
			j.lit(`,"created_at":`)
			j.cachedTime(&created, *r.CreatedAt)
		}
		j.lit(`,"status":`)
		j.str(r.Status)
		j.lit(`}`)
	})
	return j.done()
}

func (p PollOutputBody) appendJSON(b []byte) ([]byte, error) {
	j := jsonBuf{b: b}
	appendList(&j, "messages", p.Messages, func(j *jsonBuf, m *PolledMessage) {
		j.lit(`{"id":`)
		j.uuid(m.ID)
		j.lit(`,"channel":`)
		j.str(m.Channel)
		j.lit(`,"payload":`)
		j.raw(m.Payload)
		j.lit(`,"scheduled_at":`)
		j.time(m.ScheduledAt)
		j.lit(`,"status":`)
		j.str(m.Status)
		j.lit(`,"acquired_at":`)
		j.time(m.AcquiredAt)
		j.lit(`,"retry_count":`)
		j.int(m.RetryCount)
		j.lit(`,"attempts":`)
		j.int(m.Attempts)
		j.lit(`,"max_attempts":`)
		j.int(m.MaxAttempts)
		j.lit(`,"created_at":`)
		j.time(m.CreatedAt)
		j.lit(`,"leased_until":`)
		j.time(m.LeasedUntil)
		j.lit(`,"receipt":`)
		j.str(m.Receipt)
		if m.OriginalChannel != "" {
			j.lit(`,"original_channel":`)
			j.str(m.OriginalChannel)
		}
		if m.LastError != "" {
			j.lit(`,"last_error":`)
			j.str(m.LastError)
		}
		if m.UpdatedAt != nil {
			j.lit(`,"updated_at":`)
			j.time(*m.UpdatedAt)
		}
		j.lit(`}`)
	})
	return j.done()
}

// appendList appends an object whose one field, key, is items, each
// appended by item: {"key":[…]}, or {"key":null} for a nil slice, as
// encoding/json writes it.
func appendList[T any](j *jsonBuf, key string, items []T, item func(*jsonBuf, *T)) {
	j.lit(`{"`)
	j.lit(key)
	j.lit(`":`)
	if items == nil {
		j.lit(`null}`)
		return
	}
	j.lit(`[`)
	for i := range items {
		if i > 0 {
			j.lit(`,`)
		}
		item(j, &items[i])
	}
	j.lit(`]}`)
}

// jsonBuf appends JSON values to b as encoding/json writes them. The first
// value that cannot be written (a time past year 9999, a payload that is
// not JSON) sets err, and done returns it instead of the bytes.
type jsonBuf struct {
	b   []byte
	err error
}

func (j *jsonBuf) lit(s string)      { j.b = append(j.b, s...) }
func (j *jsonBuf) uuid(id uuid.UUID) { j.b = appendUUID(j.b, id) }
func (j *jsonBuf) str(s string)      { j.b = appendString(j.b, s) }
func (j *jsonBuf) int(n int)         { j.b = strconv.AppendInt(j.b, int64(n), 10) }

func (j *jsonBuf) time(t time.Time) {
	j.set(appendTime(j.b, t))
}

func (j *jsonBuf) cachedTime(c *timeCache, t time.Time) {
	j.set(c.append(j.b, t))
}

func (j *jsonBuf) raw(r json.RawMessage) {
	j.set(appendRaw(j.b, r))
}

// set keeps b, or the first error.
func (j *jsonBuf) set(b []byte, err error) {
	if err != nil {
		j.err = cmp.Or(j.err, err)
		return
	}
	j.b = b
}

func (j *jsonBuf) done() ([]byte, error) {
	if j.err != nil {
		return nil, j.err
	}
	return j.b, nil
}

// appendRaw appends raw as encoding/json writes a json.RawMessage: null
// when nil, else compacted, and an error when it is not JSON. A payload
// without whitespace (most are) that is valid JSON is already compact, and
// checking it is cheaper than compacting it.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	if !bytes.ContainsAny(raw, " \t\r\n") && json.Valid(raw) {
		return append(b, raw...), nil
	}
	out := bytes.NewBuffer(b)
	if err := json.Compact(out, raw); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// timeCache remembers the last time it appended to a buffer, and where.
type timeCache struct {
	t          time.Time
	start, end int
}

// append appends t as appendTime does, copying what it appended last when
// t is the same time in the same location.
func (c *timeCache) append(b []byte, t time.Time) ([]byte, error) {
	if c.end > 0 && t == c.t {
		return append(b, b[c.start:c.end]...), nil
	}
	start := len(b)
	b, err := appendTime(b, t)
	if err != nil {
		return nil, err
	}
	*c = timeCache{t: t, start: start, end: len(b)}
	return b, nil
}

// appendUUID appends id as uuid.UUID.MarshalText writes it, quoted.
func appendUUID(b []byte, id uuid.UUID) []byte {
	b = append(b, '"')
	b = hex.AppendEncode(b, id[0:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[8:10])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[10:16])
	return append(b, '"')
}

// appendTime appends t as time.Time.MarshalJSON writes it.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// appendString appends s as a JSON string, as encoding/json writes it
// without HTML escapes: at once when it is printable ASCII without quotes
// or backslashes, as channels and statuses are, else with encoding/json.
func appendString(b []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			var out bytes.Buffer
			enc := json.NewEncoder(&out)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(b, bytes.TrimSuffix(out.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
