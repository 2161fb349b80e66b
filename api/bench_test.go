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
// access log, metrics) with the buffer discarding what it takes.
func benchServe(b *testing.B, path string, body []byte) {
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
	req.Header.Set("api-key", keyProduce)
	w := &benchWriter{header: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		clear(w.header)
		w.status = 0
		h.ServeHTTP(w, req)
		if w.status != http.StatusCreated {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkCreate is POST /v1/message to the buffer.
func BenchmarkCreate(b *testing.B) {
	benchServe(b, "/v1/message", benchMessage(time.Now().Add(time.Hour)))
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
	benchServe(b, "/v1/messages", body)
}
