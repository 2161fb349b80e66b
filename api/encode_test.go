package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// requireSameJSON checks that jsonFormat writes v exactly as Huma's default
// JSON format (encoding/json) does, or fails as it does.
func requireSameJSON(t *testing.T, v any) {
	t.Helper()
	var want, got bytes.Buffer
	wantErr := huma.DefaultJSONFormat.Marshal(&want, v)
	gotErr := jsonFormat.Marshal(&got, v)
	require.Equal(t, wantErr != nil, gotErr != nil, "errors: %v, %v", wantErr, gotErr)
	require.Equal(t, want.String(), got.String())
}

// FuzzAppendJSON holds the create responses' own JSON to encoding/json's.
func FuzzAppendJSON(f *testing.F) {
	id := uuid.MustParse("0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f70")
	for _, channel := range []string{"c", "orders.EU_1-x", "", "a\"b\\c", "é\u2028\u2029<>&\x00\x1f\x7f", "\xff"} {
		f.Add(id[:], channel, "created", int64(1767225600), int64(123456000), 0, true)
	}
	f.Add(uuid.Nil[:], "c", "existing", int64(-62135596800), int64(0), 3600, false)
	f.Add(id[:], "c", "created", int64(253402300800), int64(0), 0, true) // year 10000: MarshalJSON fails
	f.Add(id[:], "c", "created", int64(1767225600), int64(999999999), -37800, true)
	f.Fuzz(func(t *testing.T, idBytes []byte, channel, status string, sec, nsec int64, offset int, times bool) {
		var id uuid.UUID
		copy(id[:], idBytes)
		at := time.Unix(sec, nsec).In(time.FixedZone("z", offset%(48*3600)))
		requireSameJSON(t, CreatedMessage{MessageID: id, Channel: channel, ScheduledAt: at, CreatedAt: at.Add(time.Second)})
		r := BatchResult{MessageID: id, Channel: channel, Status: status}
		if times {
			r.ScheduledAt, r.CreatedAt = &at, &at
		}
		later := at.Add(time.Duration(nsec))
		requireSameJSON(t, BatchResults{Results: []BatchResult{
			r, {MessageID: id, Channel: "c", Status: "existing"}, r,
			{MessageID: id, Channel: "c", ScheduledAt: &later, CreatedAt: &at, Status: "created"},
			{MessageID: id, Channel: "c", ScheduledAt: &at, CreatedAt: &later, Status: "created"},
		}})
	})
}

func TestAppendJSONEmpty(t *testing.T) {
	requireSameJSON(t, BatchResults{})
	requireSameJSON(t, BatchResults{Results: []BatchResult{}})
	requireSameJSON(t, CreatedMessage{})
}

// FuzzAppendPolled holds a poll's own JSON to encoding/json's, payloads
// with whitespace, empty or not JSON at all included.
func FuzzAppendPolled(f *testing.F) {
	id := uuid.MustParse("0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f70")
	for _, payload := range []string{`{"n":1}`, `{ "a" : [1, 2] }`, `"a b"`, "\t7\n", `[]`, ``, `{`, `nul`, `"\u2028<>&"`, "\"\xff\""} {
		f.Add(id[:], "c", payload, "", int64(1767225600), int64(123456000), 0, 3, true)
	}
	f.Add(uuid.Nil[:], "a\"b\\c", `null`, "lease expired", int64(-62135596800), int64(0), 3600, 0, false)
	f.Add(id[:], "c", `1`, "é\u2028\x00", int64(253402300800), int64(0), 0, 1, true) // year 10000: MarshalJSON fails
	f.Fuzz(func(t *testing.T, idBytes []byte, channel, payload, lastError string, sec, nsec int64, offset, attempts int, updated bool) {
		var id uuid.UUID
		copy(id[:], idBytes)
		at := time.Unix(sec, nsec).In(time.FixedZone("z", offset%(48*3600)))
		m := PolledMessage{
			ID: id, Channel: channel, Payload: json.RawMessage(payload), ScheduledAt: at, Status: "ACQUIRED",
			AcquiredAt: at.Add(time.Millisecond), RetryCount: max(attempts-1, 0), Attempts: attempts, MaxAttempts: attempts * 3,
			CreatedAt: at.Add(-time.Hour), LeasedUntil: at.Add(time.Duration(nsec)), Receipt: channel + lastError,
			OriginalChannel: lastError, LastError: lastError,
		}
		if updated {
			m.UpdatedAt = &at
		}
		requireSameJSON(t, PollOutputBody{Messages: []PolledMessage{m}})
		other := m
		other.Payload = nil
		requireSameJSON(t, PollOutputBody{Messages: []PolledMessage{m, other, m}})
	})
}

func TestAppendPolledEmpty(t *testing.T) {
	requireSameJSON(t, PollOutputBody{})
	requireSameJSON(t, PollOutputBody{Messages: []PolledMessage{}})
	requireSameJSON(t, PollOutputBody{Messages: []PolledMessage{{}}})
}

// BenchmarkMarshalPoll100 writes a poll's answer of 100 messages, by
// jsonFormat and by encoding/json.
func BenchmarkMarshalPoll100(b *testing.B) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	body := PollOutputBody{Messages: make([]PolledMessage, 100)}
	for i := range body.Messages {
		body.Messages[i] = PolledMessage{
			ID: uuid.Must(uuid.NewV7()), Channel: "orders", Payload: json.RawMessage(`{"order":12345,"sku":"A-1"}`),
			ScheduledAt: at, Status: "ACQUIRED", AcquiredAt: at, Attempts: 1, MaxAttempts: 10, CreatedAt: at,
			LeasedUntil: at.Add(30 * time.Second), Receipt: "AZL1tH0qfE6aGy88TV5vcAGS9bR9KnxOmhsvPE1eb3A",
		}
	}
	for _, f := range []struct {
		name   string
		format huma.Format
	}{{"appender", jsonFormat}, {"encoding-json", huma.DefaultJSONFormat}} {
		b.Run(f.name, func(b *testing.B) {
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := f.format.Marshal(&buf, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
