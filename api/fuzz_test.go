package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
)

// fuzzHandler is the whole SMQ handler on the fake store and buffer,
// without keys.
func fuzzHandler(t testing.TB) http.Handler {
	t.Helper()
	return api.NewHandler(api.Deps{Store: newFakeStore(), Buffer: newFakeBuffer(), Keys: []api.Key{}, MaxPayload: 4 << 10}, api.Config{})
}

// serve sends one request straight to h and returns the recorded answer.
func serve(h http.Handler, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// requireNo5xx fails on a server error (a handler panic is one: the
// recoverer answers 500) and on an error that is not a problem document.
func requireNo5xx(t *testing.T, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.Bytes())
	}
	if rec.Code >= 400 {
		var p struct {
			Status int `json:"status"`
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("status %d with content type %q", rec.Code, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code {
			t.Fatalf("status %d with problem %s (%v)", rec.Code, rec.Body.Bytes(), err)
		}
	}
}

var createSeeds = []string{
	`{"channel":"c","payload":1}`,
	`{"channel":"orders","payload":{"a":[1,2,{"b":null}]},"delay":"90s","max_attempts":3,"dedup_key":"k"}`,
	`{"channel":"c","payload":"x","scheduled_at":1900000000}`,
	`{"channel":"c","payload":"x","scheduled_at":"2031-01-01T00:00:00Z"}`,
	`{"channel":"c","payload":1,"scheduled_at":1e300}`,
	`{"channel":"c","payload":1,"delay":-1}`,
	`{"channel":"c","payload":1,"scheduled_at":1,"delay":1}`,
	`{"channel":"a b","payload":1}`,
	`{"channel":"c","payload":"\u0000","dedup_key":"\u0000"}`,
	"{\"channel\":\"c\",\"payload\":\"\xff\"}",
	`{"channel":"c"}`,
	`{"channel":"c","payload":1,"max_attempts":1.5}`,
	`{"channel":"c","payload":1,"bogus":true}`,
	`[[[[[[[[[[]]]]]]]]]]`,
	`{"channel":"c","payload":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}`,
	`{"channel":`,
	``,
	`null`,
	`"x"`,
}

// FuzzCreateMessage sends arbitrary bodies to POST /v1/message through the
// real handler: never a 5xx or a panic; a create that succeeds answers with
// a schedule from now to 10 years ahead.
func FuzzCreateMessage(f *testing.F) {
	for _, s := range createSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"channel":"c","payload":1}`), true)
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body []byte, committed bool) {
		path := "/v1/message"
		if committed {
			path += "?durability=committed"
		}
		start := time.Now().Add(-time.Second)
		rec := serve(h, "POST", path, body)
		requireNo5xx(t, rec, body)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			return
		}
		var out api.CreatedMessage
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		require.NotZero(t, out.MessageID)
		// A 200 (the dedup key was taken) shows the first message's
		// schedule, which may be older.
		if rec.Code == http.StatusCreated && out.ScheduledAt.Before(start) || out.ScheduledAt.After(time.Now().Add(api.MaxAhead)) {
			t.Fatalf("%q: scheduled_at %v out of bounds", body, out.ScheduledAt)
		}
	})
}

// FuzzCreateMessages does the same for the batch create.
func FuzzCreateMessages(f *testing.F) {
	for _, s := range createSeeds {
		f.Add([]byte(`{"messages":[` + s + `]}`))
	}
	f.Add([]byte(`{"messages":[]}`))
	f.Add([]byte(`{"messages":null}`))
	f.Add([]byte(`{"messages":[{"channel":"a","payload":1},{"channel":"b","payload":2,"dedup_key":"k"},{"channel":"b","payload":3,"dedup_key":"k"}]}`))
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, "POST", "/v1/messages", body)
		requireNo5xx(t, rec, body)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			return
		}
		var out api.BatchResults
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		require.NotEmpty(t, out.Results, "%q: %d %s", body, rec.Code, rec.Body.Bytes())
	})
}

// FuzzConsumerBodies sends arbitrary bodies to ack, nack, extend and
// PATCH: never a 5xx or a panic.
func FuzzConsumerBodies(f *testing.F) {
	const id = "0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f70"
	for _, s := range []string{
		`{"message_ids":["` + id + `"]}`,
		`{"receipts":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]}`,
		`{"receipts":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"visibility_timeout":"1h"}`,
		`{"message_ids":["` + id + `"],"receipts":["x"]}`,
		`{"message_ids":["` + id + `"],"delay":"5s","reason":"boom"}`,
		`{"message_ids":["` + id + `"],"delay":1e300,"reason":"\u0000"}`,
		`{"message_ids":"x"}`,
		`{"scheduled_at":0,"payload":{"new":true}}`,
		`{"delay":"1h"}`,
		`{}`,
		`[]`,
		``,
	} {
		for op := range uint8(4) {
			f.Add(op, []byte(s))
		}
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		method, path := "POST", []string{"/v1/messages/ack", "/v1/messages/nack", "/v1/messages/extend"}[op%4%3]
		if op%4 == 3 {
			method, path = "PATCH", "/v1/message/"+id
		}
		requireNo5xx(t, serve(h, method, path, body), body)
	})
}
