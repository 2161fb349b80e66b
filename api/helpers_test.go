package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
)

// Keys of the test servers, one per scope and one with all of them.
const (
	keyAll     = "all-secret-1"
	keyProduce = "produce-secret"
	keyConsume = "consume-secret"
	keyAdmin   = "admin-secret"
)

var testKeys = []api.Key{
	{Name: "all", Secret: keyAll, Scopes: api.AllScopes},
	{Name: "producer", Secret: keyProduce, Scopes: []api.Scope{api.ScopeProduce}},
	{Name: "consumer", Secret: keyConsume, Scopes: []api.Scope{api.ScopeConsume}},
	{Name: "admin", Secret: keyAdmin, Scopes: []api.Scope{api.ScopeAdmin}},
}

// syncBuffer collects log output from concurrent requests.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is an SMQ handler behind a real HTTP server.
type testServer struct {
	URL  string
	logs *syncBuffer
}

// start serves api.NewHandler(d) until the test ends. Unset keys default
// to testKeys; set d.Keys to an empty non-nil slice for no auth.
func start(t *testing.T, d api.Deps, cfg api.Config) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if d.Keys == nil {
		d.Keys = testKeys
	}
	srv := httptest.NewServer(api.NewHandler(d, cfg))
	t.Cleanup(srv.Close)
	return &testServer{URL: srv.URL, logs: logs}
}

// response is a read response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as an object.
func (r *response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &v), "body: %s", r.Body)
	return v
}

// Decode decodes the body into v.
func (r *response) Decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// do sends a request with key (none when empty); body is sent as is when it
// is a string or []byte, else as JSON. headers are name, value pairs.
func (s *testServer) do(t *testing.T, key, method, path string, body any, headers ...string) *response {
	t.Helper()
	r, err := s.send(t.Context(), key, method, path, body, headers...)
	require.NoError(t, err)
	return r
}

// send is do for goroutines other than the test's: it returns its error.
func (s *testServer) send(ctx context.Context, key, method, path string, body any, headers ...string) (*response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("api-key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// requireProblem checks that r is a problem with status whose details (or
// detail) mention each of want.
func requireProblem(t *testing.T, r *response, status int, want ...string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), "body: %s", r.Body)
	p := r.JSON(t)
	require.EqualValues(t, status, p["status"], "body: %s", r.Body)
	for _, w := range want {
		require.Contains(t, string(r.Body), w, "problem should mention %q", w)
	}
}
