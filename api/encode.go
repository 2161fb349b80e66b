package api

import (
	"bytes"
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
	var err error
	b = append(b, `{"message_id":`...)
	b = appendUUID(b, m.MessageID)
	b = append(b, `,"channel":`...)
	b = appendString(b, m.Channel)
	b = append(b, `,"scheduled_at":`...)
	if b, err = appendTime(b, m.ScheduledAt); err != nil {
		return nil, err
	}
	b = append(b, `,"created_at":`...)
	if b, err = appendTime(b, m.CreatedAt); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func (r BatchResults) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"results":`...)
	if r.Results == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	// The results of a batch share their created_at, and often their
	// scheduled_at.
	var scheduled, created timeCache
	for i := range r.Results {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = r.Results[i].appendJSON(b, &scheduled, &created); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

func (r *BatchResult) appendJSON(b []byte, scheduled, created *timeCache) ([]byte, error) {
	var err error
	b = append(b, `{"message_id":`...)
	b = appendUUID(b, r.MessageID)
	b = append(b, `,"channel":`...)
	b = appendString(b, r.Channel)
	if r.ScheduledAt != nil {
		b = append(b, `,"scheduled_at":`...)
		if b, err = scheduled.append(b, *r.ScheduledAt); err != nil {
			return nil, err
		}
	}
	if r.CreatedAt != nil {
		b = append(b, `,"created_at":`...)
		if b, err = created.append(b, *r.CreatedAt); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"status":`...)
	b = appendString(b, r.Status)
	return append(b, '}'), nil
}

func (p PollOutputBody) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"messages":`...)
	if p.Messages == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i := range p.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = p.Messages[i].appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

func (m *PolledMessage) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendUUID(b, m.ID)
	b = append(b, `,"channel":`...)
	b = appendString(b, m.Channel)
	b = append(b, `,"payload":`...)
	if b, err = appendRaw(b, m.Payload); err != nil {
		return nil, err
	}
	b = append(b, `,"scheduled_at":`...)
	if b, err = appendTime(b, m.ScheduledAt); err != nil {
		return nil, err
	}
	b = append(b, `,"status":`...)
	b = appendString(b, m.Status)
	b = append(b, `,"acquired_at":`...)
	if b, err = appendTime(b, m.AcquiredAt); err != nil {
		return nil, err
	}
	b = append(b, `,"retry_count":`...)
	b = strconv.AppendInt(b, int64(m.RetryCount), 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(m.Attempts), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(m.MaxAttempts), 10)
	b = append(b, `,"created_at":`...)
	if b, err = appendTime(b, m.CreatedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"leased_until":`...)
	if b, err = appendTime(b, m.LeasedUntil); err != nil {
		return nil, err
	}
	b = append(b, `,"receipt":`...)
	b = appendString(b, m.Receipt)
	if m.OriginalChannel != "" {
		b = append(b, `,"original_channel":`...)
		b = appendString(b, m.OriginalChannel)
	}
	if m.LastError != "" {
		b = append(b, `,"last_error":`...)
		b = appendString(b, m.LastError)
	}
	if m.UpdatedAt != nil {
		b = append(b, `,"updated_at":`...)
		if b, err = appendTime(b, *m.UpdatedAt); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendRaw appends raw as encoding/json writes a json.RawMessage: null
// when nil, else compacted, and an error when it is not JSON. A payload
// without whitespace (most are) only needs checking, which is cheaper.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	if bytes.ContainsAny(raw, " \t\r\n") {
		out := bytes.NewBuffer(b)
		if err := json.Compact(out, raw); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	if !json.Valid(raw) {
		return nil, &json.SyntaxError{}
	}
	return append(b, raw...), nil
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
