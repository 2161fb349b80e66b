package api_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
)

// discardBuffer is a buffer that takes every append and keeps nothing, so
// that the benchmarks measure the API rather than a fake.
type discardBuffer struct{ *fakeBuffer }

func (discardBuffer) Append(context.Context, []*store.Message) error { return nil }

// benchWriter is a ResponseWriter that keeps the status and discards the
// body.
type benchWriter struct {
	header http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }

// benchMessage is one message as the load generator of test/bench sends it.
func benchMessage(at time.Time) []byte {
	return []byte(`{"channel":"orders","payload":{"n":1},"scheduled_at":"` + at.UTC().Format(time.RFC3339Nano) + `"}`)
}

// benchServe sends body to path b.N times through the whole handler (auth,
// access log, metrics) with the buffer discarding what it takes, and
// expects status.
func benchServe(b *testing.B, path string, body []byte, status int) {
	h := api.NewHandler(api.Deps{
		Store:  newFakeStore(),
		Buffer: discardBuffer{newFakeBuffer()},
		Keys:   testKeys,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}, api.Config{})
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, path, nil)
	req.Body = io.NopCloser(rd)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", keyAll)
	w := &benchWriter{header: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		clear(w.header)
		w.status = 0
		h.ServeHTTP(w, req)
		if w.status != status {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkCreate is POST /v1/message to the buffer.
func BenchmarkCreate(b *testing.B) {
	benchServe(b, "/v1/message", benchMessage(time.Now().Add(time.Hour)), http.StatusCreated)
}

// BenchmarkCreateBatch1000 is POST /v1/messages of 1000 messages to the
// buffer.
func BenchmarkCreateBatch1000(b *testing.B) {
	at := time.Now().Add(time.Hour)
	body := []byte(`{"messages":[`)
	for i := range 1000 {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, benchMessage(at.Add(time.Duration(i)*time.Millisecond))...)
	}
	body = append(body, "]}"...)
	benchServe(b, "/v1/messages", body, http.StatusCreated)
}

// BenchmarkAck1000 is POST /v1/messages/ack of 1000 message ids.
func BenchmarkAck1000(b *testing.B) {
	benchServe(b, "/v1/messages/ack", leaseBody("message_ids", 1000, ""), http.StatusOK)
}

// BenchmarkNack1000 is POST /v1/messages/nack of 1000 message ids.
func BenchmarkNack1000(b *testing.B) {
	benchServe(b, "/v1/messages/nack", leaseBody("message_ids", 1000, `,"delay":"30s","reason":"downstream timed out"`), http.StatusOK)
}

// leaseBody is an ack or nack body of n ids in field, and more fields.
func leaseBody(field string, n int, more string) []byte {
	body := []byte(`{"` + field + `":[`)
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `"`+uuid.Must(uuid.NewV7()).String()+`"`...)
	}
	return append(append(body, ']'), more+"}"...)
}
