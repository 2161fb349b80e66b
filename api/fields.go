package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

// Schedule is a `scheduled_at` in a JSON body: Unix seconds (an integer) or
// an RFC 3339 string. It keeps the raw value; time parses it, so that a bad
// value gets a 422 that names the field.
type Schedule struct{ raw json.RawMessage }

// UnmarshalJSON keeps the raw value.
func (s *Schedule) UnmarshalJSON(b []byte) error {
	s.raw = append(s.raw[:0], b...)
	return nil
}

// MarshalJSON returns the raw value.
func (s Schedule) MarshalJSON() ([]byte, error) {
	if len(s.raw) == 0 {
		return []byte("null"), nil
	}
	return s.raw, nil
}

// Schema describes both forms.
func (Schedule) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{
		Description: "When the message becomes deliverable: Unix seconds or an RFC 3339 time. " +
			"A past time means now; at most 10 years ahead.",
		OneOf: []*huma.Schema{
			{Type: huma.TypeInteger, Format: "int64", Description: "Unix time in seconds.", Examples: []any{1767225600}},
			{Type: huma.TypeString, Description: "RFC 3339 time.", Examples: []any{"2026-01-01T00:00:00Z"}},
		},
	}
}

func (s Schedule) set() bool { return len(s.raw) > 0 && !bytes.Equal(s.raw, []byte("null")) }

// time returns the scheduled time, now when it is in the past, or an error
// that says what is wrong.
func (s Schedule) time(now time.Time) (time.Time, error) {
	var t time.Time
	if s.raw[0] == '"' {
		str, err := unquote(s.raw)
		if err != nil {
			return time.Time{}, fmt.Errorf("not a string")
		}
		parsed, err := parseTime(str)
		if err != nil {
			return time.Time{}, fmt.Errorf("not an RFC 3339 time such as 2026-01-01T00:00:00Z, nor Unix seconds")
		}
		t = parsed
	} else {
		f, err := strconv.ParseFloat(string(s.raw), 64)
		switch {
		case err != nil:
			return time.Time{}, fmt.Errorf("not Unix seconds nor an RFC 3339 time")
		case f != math.Trunc(f):
			return time.Time{}, fmt.Errorf("must be a whole number of Unix seconds")
		case f < 0:
			return time.Time{}, fmt.Errorf("must not be negative Unix seconds")
		case f > float64(now.Add(MaxAhead).Unix()):
			return time.Time{}, fmt.Errorf("more than 10 years ahead (scheduled_at takes Unix seconds, not milliseconds)")
		}
		t = time.Unix(int64(f), 0)
	}
	if t.After(now.Add(MaxAhead)) {
		return time.Time{}, fmt.Errorf("more than 10 years ahead")
	}
	if t.Before(now) {
		return now, nil
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// Duration is a duration in a JSON body: whole seconds (an integer) or a Go
// duration string such as "90s" or "3h". It keeps the raw value; duration
// parses it.
type Duration struct{ raw json.RawMessage }

// UnmarshalJSON keeps the raw value.
func (d *Duration) UnmarshalJSON(b []byte) error {
	d.raw = append(d.raw[:0], b...)
	return nil
}

// MarshalJSON returns the raw value.
func (d Duration) MarshalJSON() ([]byte, error) {
	if len(d.raw) == 0 {
		return []byte("null"), nil
	}
	return d.raw, nil
}

// Schema describes both forms.
func (Duration) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{
		Description: "A duration: whole seconds, or a duration string such as \"90s\", \"15m\" or \"3h\".",
		OneOf: []*huma.Schema{
			{Type: huma.TypeInteger, Format: "int64", Description: "Whole seconds.", Examples: []any{90}},
			{Type: huma.TypeString, Description: "Duration string (units ns, us, ms, s, m, h).", Examples: []any{"90s"}},
		},
	}
}

func (d Duration) set() bool { return len(d.raw) > 0 && !bytes.Equal(d.raw, []byte("null")) }

// duration returns the duration if it lies within [lo, hi].
func (d Duration) duration(lo, hi time.Duration) (time.Duration, error) {
	var v time.Duration
	if d.raw[0] == '"' {
		str, err := unquote(d.raw)
		if err != nil {
			return 0, fmt.Errorf("not a string")
		}
		parsed, err := time.ParseDuration(string(str))
		if err != nil {
			return 0, fmt.Errorf("not a duration such as \"90s\" or \"3h\", nor whole seconds")
		}
		v = parsed
	} else {
		f, err := strconv.ParseFloat(string(d.raw), 64)
		switch {
		case err != nil:
			return 0, fmt.Errorf("not whole seconds nor a duration string")
		case f != math.Trunc(f):
			return 0, fmt.Errorf("seconds must be a whole number (or use a duration string such as \"1.5s\")")
		case f < lo.Seconds() || f > hi.Seconds():
			return 0, fmt.Errorf("must be between %s and %s", fmtDuration(lo), fmtDuration(hi))
		}
		v = time.Duration(f) * time.Second
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("must be between %s and %s", fmtDuration(lo), fmtDuration(hi))
	}
	return v, nil
}

// unquote returns the contents of the JSON string raw: a slice of raw when
// it is printable ASCII without escapes, as a time or a duration mostly is,
// else what encoding/json decodes.
func unquote(raw []byte) ([]byte, error) {
	plain := len(raw) >= 2 && raw[len(raw)-1] == '"'
	for i := 1; plain && i < len(raw)-1; i++ {
		plain = raw[i] >= 0x20 && raw[i] < 0x80 && raw[i] != '"' && raw[i] != '\\'
	}
	if plain {
		return raw[1 : len(raw)-1], nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return []byte(s), err
}

// parseTime parses b as time.Parse(time.RFC3339Nano, string(b)) does,
// without making a string of it when it is a well-formed RFC 3339 time.
func parseTime(b []byte) (time.Time, error) {
	var t time.Time
	// UnmarshalText reads RFC 3339 as Parse does, with the same fast
	// parser first.
	if t.UnmarshalText(b) == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, string(b))
}

// fmtDuration writes bounds the way people say them.
func fmtDuration(d time.Duration) string {
	switch {
	case d == MaxAhead:
		return "10 years"
	case d == 0:
		return "0s"
	}
	return d.String()
}
