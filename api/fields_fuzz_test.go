package api

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// fuzzNow is the clock of the field fuzz targets, at the API's precision.
var fuzzNow = time.Date(2030, 6, 15, 12, 30, 45, 123456000, time.UTC)

// decodeField decodes raw as the value of a body field, as the request
// decoder does, and reports whether raw is a JSON value at all.
func decodeField[T any](raw []byte) (T, bool) {
	var body struct {
		F T `json:"f"`
	}
	if !json.Valid(raw) {
		return body.F, false
	}
	err := json.Unmarshal(append(append([]byte(`{"f":`), raw...), '}'), &body)
	return body.F, err == nil
}

// marshalsBack checks that a field's MarshalJSON gives back what it read.
func marshalsBack(t *testing.T, m json.Marshaler, raw json.RawMessage) {
	t.Helper()
	want := string(raw)
	if want == "" {
		want = "null"
	}
	if out, err := m.MarshalJSON(); err != nil || string(out) != want {
		t.Fatalf("MarshalJSON: %q, %v; want %q", out, err, want)
	}
}

// FuzzSchedule checks scheduled_at parsing: it never panics; an accepted
// value is UTC, at microsecond precision, from now to 10 years ahead; a
// future one reads back the same from its RFC 3339 form (and its Unix
// seconds when whole); the raw value round-trips through MarshalJSON.
func FuzzSchedule(f *testing.F) {
	for _, seed := range []string{
		`0`, `-1`, `1`, `1700000000`, `1.9e9`, `1e300`, `-1e300`, `1e400`, `9223372036854775807`,
		`2e9`, `2.5`, `-0`, `null`, `true`, `{}`, `[]`,
		`""`, `"2030-06-15T12:30:45Z"`, `"2031-01-01T00:00:00.123456789+05:30"`, `"9999-12-31T23:59:59Z"`,
		`"0000-01-01T00:00:00Z"`, `"2030-06-15T12:30:45.1234564Z"`, `"tomorrow"`, `"\u0000"`, `"2030-02-30T00:00:00Z"`,
		strconv.FormatInt(fuzzNow.Add(MaxAhead).Unix(), 10), strconv.FormatInt(fuzzNow.Add(MaxAhead).Unix()+1, 10),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, ok := decodeField[Schedule](raw)
		if !ok {
			return
		}
		marshalsBack(t, s, s.raw)
		if !s.set() {
			return
		}
		at, err := s.time(fuzzNow)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%s: an empty error message", raw)
			}
			return
		}
		if at.Location() != time.UTC || !at.Equal(at.Truncate(time.Microsecond)) {
			t.Fatalf("%s: %v is not UTC at microsecond precision", raw, at)
		}
		if at.Before(fuzzNow) || at.After(fuzzNow.Add(MaxAhead)) {
			t.Fatalf("%s: %v is outside [now, now+10y]", raw, at)
		}
		if !at.After(fuzzNow) {
			return
		}
		again := Schedule{raw: json.RawMessage(strconv.Quote(at.Format(time.RFC3339Nano)))}
		if back, err := again.time(fuzzNow); err != nil || !back.Equal(at) {
			t.Fatalf("%s: %s reads back as %v, %v", raw, again.raw, back, err)
		}
		if at.Equal(at.Truncate(time.Second)) {
			again = Schedule{raw: json.RawMessage(strconv.FormatInt(at.Unix(), 10))}
			if back, err := again.time(fuzzNow); err != nil || !back.Equal(at) {
				t.Fatalf("%s: %s reads back as %v, %v", raw, again.raw, back, err)
			}
		}
	})
}

// FuzzDuration checks delay and visibility_timeout parsing: it never
// panics; an accepted value is within the bounds asked for and reads back
// the same from its duration string (and its seconds when whole).
func FuzzDuration(f *testing.F) {
	for _, seed := range []string{
		`0`, `1`, `-1`, `30`, `1.5`, `1e3`, `1e300`, `-1e300`, `1e400`, `43200`, `43201`, `315576000`, `315576001`,
		`9223372036854775807`, `null`, `true`, `[]`, `""`, `"90s"`, `"1.5s"`, `"-5s"`, `"3h"`, `"12h0m1s"`,
		`"87660h"`, `"87660h0m0.000000001s"`, `"999999999999h"`, `"2562047h47m16.854775807s"`, `"1ns"`, `".5s"`,
		`"forever"`, `"\u0000"`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, lease bool) {
		lo, hi := time.Duration(0), MaxAhead // delay
		if lease {
			lo, hi = time.Second, MaxVisibility // visibility_timeout
		}
		d, ok := decodeField[Duration](raw)
		if !ok {
			return
		}
		marshalsBack(t, d, d.raw)
		if !d.set() {
			return
		}
		v, err := d.duration(lo, hi)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%s: an empty error message", raw)
			}
			return
		}
		if v < lo || v > hi {
			t.Fatalf("%s: %s is outside [%s, %s]", raw, v, lo, hi)
		}
		again := Duration{raw: json.RawMessage(strconv.Quote(v.String()))}
		if back, err := again.duration(lo, hi); err != nil || back != v {
			t.Fatalf("%s: %s reads back as %s, %v", raw, again.raw, back, err)
		}
		if v%time.Second == 0 {
			again = Duration{raw: json.RawMessage(strconv.FormatInt(int64(v/time.Second), 10))}
			if back, err := again.duration(lo, hi); err != nil || back != v {
				t.Fatalf("%s: %s reads back as %s, %v", raw, again.raw, back, err)
			}
		}
	})
}

// FuzzParseTime holds parseTime to time.Parse(time.RFC3339Nano, …).
func FuzzParseTime(f *testing.F) {
	for _, seed := range []string{
		"2030-06-15T12:30:45Z", "2030-06-15T12:30:45.123456789+05:30", "2030-06-15T12:30:45,5Z", "2030-06-15T1:30:45Z",
		"2030-06-15T12:30:45+24:00", "2030-06-15T12:30:45.1234567891Z", "2030-06-15 12:30:45Z", "2030-02-30T00:00:00Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:60Z", "2030-06-15T12:30:45z", "", "tomorrow",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantErr := time.Parse(time.RFC3339Nano, string(b))
		got, err := parseTime(b)
		if (err == nil) != (wantErr == nil) || !got.Equal(want) || got.String() != want.String() {
			t.Fatalf("%q: parseTime %v, %v; time.Parse %v, %v", b, got, err, want, wantErr)
		}
	})
}
