package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
)

// TestCreateRouting checks where creates go: without a dedup key to the
// buffer, with one (or durability=committed) to the database; a batch makes
// one append and one insert.
func TestCreateRouting(t *testing.T) {
	fs, fb := newFakeStore(), newFakeBuffer()
	srv := start(t, api.Deps{Store: fs, Buffer: fb}, api.Config{})

	r := srv.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":{"n":1}}`)
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	id := uuid.MustParse(r.JSON(t)["message_id"].(string))
	require.Equal(t, uuid.Version(7), id.Version())
	require.Equal(t, 1, fb.appendCount())
	require.Equal(t, 0, fs.insertCount())

	got := srv.do(t, keyProduce, "GET", "/v1/message/"+id.String(), nil)
	require.Equal(t, 200, got.Status)
	require.Equal(t, true, got.JSON(t)["buffered"], "a buffered message shows buffered: true")
	require.JSONEq(t, `{"n":1}`, string(mustJSON(t, got.JSON(t)["payload"])))

	r = srv.do(t, keyProduce, "POST", "/v1/message?durability=committed", `{"channel":"c","payload":1}`)
	require.Equal(t, 201, r.Status)
	require.Equal(t, 1, fb.appendCount())
	require.Equal(t, 1, fs.insertCount())

	r = srv.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":1,"dedup_key":"k"}`)
	require.Equal(t, 201, r.Status)
	first := r.JSON(t)["message_id"]
	require.Equal(t, 1, fb.appendCount(), "a dedup key never goes to the buffer")
	require.Equal(t, 2, fs.insertCount())

	r = srv.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":2}`, "Idempotency-Key", "k")
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	require.Equal(t, first, r.JSON(t)["message_id"])

	batch := `{"messages":[{"channel":"a","payload":1},{"channel":"b","payload":2,"dedup_key":"k"},{"channel":"c","payload":3,"dedup_key":"k"},{"channel":"d","payload":4}]}`
	r = srv.do(t, keyProduce, "POST", "/v1/messages", batch)
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	require.Equal(t, 2, fb.appendCount(), "one append for the batch")
	require.Equal(t, 4, fs.insertCount(), "one insert for the batch")
	var res api.BatchResults
	r.Decode(t, &res)
	require.Len(t, res.Results, 4)
	require.Equal(t, []string{"created", "created", "existing", "created"},
		[]string{res.Results[0].Status, res.Results[1].Status, res.Results[2].Status, res.Results[3].Status})
	require.Equal(t, first, res.Results[2].MessageID.String())
	for i, ch := range []string{"a", "b", "c", "d"} {
		require.Equal(t, ch, res.Results[i].Channel)
	}

	// The buffered message is deleted from the buffer; nothing to flush.
	require.Equal(t, 200, srv.do(t, keyProduce, "DELETE", "/v1/message/"+id.String(), nil).Status)
	_, ok := fb.Get(id)
	require.False(t, ok)
	requireProblem(t, srv.do(t, keyProduce, "DELETE", "/v1/message/"+id.String(), nil), 404)
	requireProblem(t, srv.do(t, keyProduce, "GET", "/v1/message/"+id.String(), nil), 404, "not found")
}

// TestBatchIDs checks the ids of a batch: version 7, distinct, in the
// order of the messages.
func TestBatchIDs(t *testing.T) {
	srv := start(t, api.Deps{Store: newFakeStore(), Buffer: newFakeBuffer()}, api.Config{})
	r := srv.do(t, keyProduce, "POST", "/v1/messages", batchBody(100))
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	var res api.BatchResults
	r.Decode(t, &res)
	require.Len(t, res.Results, 100)
	var ids []string
	for _, res := range res.Results {
		require.Equal(t, uuid.Version(7), res.MessageID.Version())
		ids = append(ids, res.MessageID.String())
	}
	require.True(t, slices.IsSorted(ids), "ids out of order: %v", ids)
	require.Len(t, slices.Compact(ids), 100, "ids repeat")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestSchedule checks the two forms of scheduled_at and delay.
func TestSchedule(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	fs := newFakeStore()
	srv := start(t, api.Deps{Store: fs, Now: func() time.Time { return now }}, api.Config{})
	for _, c := range []struct {
		body string
		want time.Time
	}{
		{`{"channel":"c","payload":1}`, now},
		{`{"channel":"c","payload":1,"scheduled_at":1000}`, now},
		{`{"channel":"c","payload":1,"scheduled_at":"2001-01-01T00:00:00Z"}`, now},
		{fmt.Sprintf(`{"channel":"c","payload":1,"scheduled_at":%d}`, now.Unix()+3600), now.Add(time.Hour)},
		{`{"channel":"c","payload":1,"scheduled_at":"2030-01-02T05:04:05+01:00"}`, now.Add(time.Hour)},
		{`{"channel":"c","payload":1,"scheduled_at":1.9e9}`, time.Unix(1900000000, 0)},
		{`{"channel":"c","payload":1,"delay":"90s"}`, now.Add(90 * time.Second)},
		{`{"channel":"c","payload":1,"delay":"3h"}`, now.Add(3 * time.Hour)},
		{`{"channel":"c","payload":1,"delay":30}`, now.Add(30 * time.Second)},
		{`{"channel":"c","payload":1,"delay":0}`, now},
		{fmt.Sprintf(`{"channel":"c","payload":1,"scheduled_at":%d}`, now.Add(api.MaxAhead).Unix()), now.Add(api.MaxAhead)},
	} {
		r := srv.do(t, keyProduce, "POST", "/v1/message", c.body)
		require.Equal(t, 201, r.Status, "%s: %s", c.body, r.Body)
		var out api.CreatedMessage
		r.Decode(t, &out)
		require.True(t, c.want.Equal(out.ScheduledAt), "%s: want %s, got %s", c.body, c.want, out.ScheduledAt)
		require.True(t, now.Equal(out.CreatedAt))
		m, err := fs.MessageGet(t.Context(), out.MessageID)
		require.NoError(t, err)
		require.True(t, c.want.Equal(m.ScheduledAt))
		require.Equal(t, 10, m.MaxAttempts, "max_attempts defaults to 10")
		require.Equal(t, "default", m.Region)
	}
}

// TestStoreErrors checks that the store's and buffer's errors reach the
// client as the problems DESIGN.md names, promptly.
func TestLongPollEndsWhenTheNodeDrains(t *testing.T) {
	draining := make(chan struct{})
	srv := start(t, api.Deps{Store: newFakeStore(), Notifier: newFakeNotifier(), Draining: draining}, api.Config{})
	done := make(chan *response, 1)
	go func() { done <- srv.do(t, keyAll, "GET", "/v1/channels/c/poll?wait=20", nil) }()
	select {
	case <-done:
		t.Fatal("the long poll answered before the node drained")
	case <-time.After(200 * time.Millisecond):
	}
	close(draining)
	select {
	case r := <-done:
		require.Equal(t, 200, r.Status)
		require.JSONEq(t, `{"messages":[]}`, string(r.Body))
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll did not end when the node began to drain")
	}
}

func TestStoreErrors(t *testing.T) {
	fs, fb := newFakeStore(), newFakeBuffer()
	srv := start(t, api.Deps{Store: fs, Buffer: fb, Notifier: newFakeNotifier()}, api.Config{})

	fb.fail(store.ErrBufferFull)
	r := srv.do(t, keyAll, "POST", "/v1/message", `{"channel":"c","payload":1}`)
	requireProblem(t, r, 429, "buffer is full")
	require.NotEmpty(t, r.Header.Get("Retry-After"))

	fb.fail(store.ErrStorageFull)
	requireProblem(t, srv.do(t, keyAll, "POST", "/v1/message", `{"channel":"c","payload":1}`), 507)

	fb.fail(fmt.Errorf("%w: sync: input/output error", store.ErrBufferFailed))
	r = srv.do(t, keyAll, "POST", "/v1/message", `{"channel":"c","payload":1}`)
	requireProblem(t, r, 503, "may or may not have taken effect")
	require.Empty(t, r.Header.Get("Retry-After"), "the node takes no writes until it restarts: retry elsewhere")

	fs.fail(fmt.Errorf("insert: %w", store.ErrUnavailable))
	r = srv.do(t, keyAll, "POST", "/v1/message?durability=committed", `{"channel":"c","payload":1}`)
	requireProblem(t, r, 503, "database")
	require.NotEmpty(t, r.Header.Get("Retry-After"))

	start := time.Now()
	r = srv.do(t, keyAll, "GET", "/v1/channels/c/poll?wait=20", nil)
	requireProblem(t, r, 503)
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	require.Less(t, time.Since(start), 5*time.Second, "an unavailable database must not hang a long poll")

	for _, path := range []string{"/v1/messages/ack", "/v1/messages/nack"} {
		requireProblem(t, srv.do(t, keyAll, "POST", path, fmt.Sprintf(`{"message_ids":[%q]}`, someID)), 503)
	}
	requireProblem(t, srv.do(t, keyAll, "GET", "/v1/channels", nil), 503)
	requireProblem(t, srv.do(t, keyAll, "GET", "/readyz", nil), 503, "not ready")
	require.Equal(t, 200, srv.do(t, "", "GET", "/livez", nil).Status)

	fs.fail(fmt.Errorf("ack: %w", store.ErrStaleLease))
	requireProblem(t, srv.do(t, keyAll, "POST", "/v1/messages/ack", `{"receipts":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]}`), 409, "stale")

	fs.fail(fmt.Errorf("update: %w", store.ErrConflict))
	requireProblem(t, srv.do(t, keyAll, "PATCH", "/v1/message/"+someID, `{"delay":5}`), 409, "leased")

	fs.fail(fmt.Errorf("boom"))
	r = srv.do(t, keyAll, "GET", "/v1/message/"+someID, nil)
	requireProblem(t, r, 500)
	require.NotContains(t, string(r.Body), "boom", "internal errors stay in the log")
	require.Contains(t, srv.logs.String(), "boom")
	require.Contains(t, srv.logs.String(), r.Header.Get("X-Request-Id"))

	fs.fail(nil)
	require.Equal(t, 200, srv.do(t, "", "GET", "/readyz", nil).Status)
}

// slowStore answers nothing until its context ends.
type slowStore struct{ *fakeStore }

func (slowStore) MessagePoll(ctx context.Context, _ *store.MessagePollParams) ([]*store.Message, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestStoreTimeout(t *testing.T) {
	srv := start(t, api.Deps{Store: slowStore{newFakeStore()}, StoreTimeout: 50 * time.Millisecond}, api.Config{})
	r := srv.do(t, keyAll, "GET", "/v1/channels/c/poll", nil)
	requireProblem(t, r, 503, "did not answer")
	require.NotEmpty(t, r.Header.Get("Retry-After"))
}

// fakeNotifier is a store.Notifier woken by the test.
type fakeNotifier struct {
	subscribed chan string
}

func newFakeNotifier() *fakeNotifier { return &fakeNotifier{subscribed: make(chan string, 100)} }

func (n *fakeNotifier) Subscribe(topic string) (<-chan struct{}, func()) {
	select {
	case n.subscribed <- topic:
	default:
	}
	return make(chan struct{}), func() {}
}

// TestPollParams checks the defaults and bounds a poll hands the store.
func TestPollParams(t *testing.T) {
	fs := newFakeStore()
	n := newFakeNotifier()
	srv := start(t, api.Deps{Store: fs, Notifier: n, Region: "eu"}, api.Config{})

	r := srv.do(t, keyConsume, "GET", "/v1/channels/c/poll", nil)
	require.Equal(t, 200, r.Status)
	require.JSONEq(t, `{"messages":[]}`, string(r.Body))
	require.Equal(t, &store.MessagePollParams{Channel: "c", Max: 1000, Visibility: 30 * time.Second, Region: "eu"}, fs.lastPoll)

	r = srv.do(t, keyConsume, "GET", "/v1/channels/c.DLQ/poll?max=10000&visibility_timeout=43200&subsidize=true&wait=1", nil)
	require.Equal(t, 200, r.Status)
	require.Equal(t, &store.MessagePollParams{Channel: "c.DLQ", Max: 10000, Visibility: 12 * time.Hour, Region: "eu", Subsidize: true}, fs.lastPoll)
	require.Equal(t, store.ReadyTopic("c.DLQ"), <-n.subscribed, "a long poll subscribes to its channel's ready topic")
}

// TestNackParams checks the backoff and delay a nack hands the store.
func TestNackParams(t *testing.T) {
	fs := newFakeStore()
	srv := start(t, api.Deps{Store: fs}, api.Config{})
	r := srv.do(t, keyConsume, "POST", "/v1/messages/nack", fmt.Sprintf(`{"message_ids":[%q],"reason":"db down"}`, someID))
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	require.JSONEq(t, `{"success":true,"count":0}`, string(r.Body))
	require.Nil(t, fs.lastNack.Delay)
	require.Equal(t, "db down", fs.lastNack.Reason)
	require.Equal(t, store.Backoff{Base: time.Second, Factor: 2, Cap: time.Hour}, fs.lastNack.Backoff)
	require.Equal(t, []uuid.UUID{uuid.MustParse(someID)}, fs.lastNack.IDs)

	r = srv.do(t, keyConsume, "POST", "/v1/messages/nack", fmt.Sprintf(`{"message_ids":[%q],"delay":"2m"}`, someID))
	require.Equal(t, 200, r.Status)
	require.Equal(t, 2*time.Minute, *fs.lastNack.Delay)
}

// TestDocsOffline checks that /docs needs nothing from the internet.
func TestDocsOffline(t *testing.T) {
	srv := start(t, api.Deps{Store: newFakeStore()}, api.Config{})
	r := srv.do(t, "", "GET", "/docs", nil)
	require.Equal(t, 200, r.Status)
	page := string(r.Body)
	require.Contains(t, page, `src="/docs/assets/web-components.min.js"`)
	require.Contains(t, page, `href="/docs/assets/styles.min.css"`)
	require.Contains(t, page, `apiDescriptionUrl="/openapi.yaml"`)
	require.NotContains(t, page, "http://")
	require.NotContains(t, page, "https://")
	require.NotContains(t, r.Header.Get("Content-Security-Policy"), "unpkg")

	js := srv.do(t, "", "GET", "/docs/assets/web-components.min.js", nil)
	require.Equal(t, 200, js.Status)
	require.Greater(t, len(js.Body), 1<<20)
	require.Contains(t, js.Header.Get("Content-Type"), "javascript")
	css := srv.do(t, "", "GET", "/docs/assets/styles.min.css", nil)
	require.Equal(t, 200, css.Status)
	require.Contains(t, css.Header.Get("Content-Type"), "text/css")

	spec := srv.do(t, "", "GET", "/openapi.yaml", nil)
	require.Equal(t, 200, spec.Status)
	require.Contains(t, string(spec.Body), "create-message")
	spec30 := srv.do(t, "", "GET", "/openapi-3.0.yaml", nil)
	require.Equal(t, 200, spec30.Status)
	require.Contains(t, string(spec30.Body), "openapi: 3.0.3")
}

// TestResponseShape checks that responses carry no Huma link noise and a
// request id that every log line of the request carries.
func TestResponseShape(t *testing.T) {
	srv := start(t, api.Deps{Store: newFakeStore()}, api.Config{})
	r := srv.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":1}`, "X-Request-Id", "client-id-1")
	require.Equal(t, 201, r.Status)
	require.Empty(t, r.Header.Get("Link"))
	require.NotContains(t, string(r.Body), "$schema")
	require.Equal(t, "client-id-1", r.Header.Get("X-Request-Id"))
	require.Equal(t, []string{"channel", "created_at", "message_id", "scheduled_at"}, keys(r.JSON(t)))

	r = srv.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":1}`, "X-Request-Id", "bad id\twith spaces")
	require.Regexp(t, `^[0-9a-f]{24}$`, r.Header.Get("X-Request-Id"), "ill-formed client ids are replaced")

	var found bool
	for _, line := range strings.Split(srv.logs.String(), "\n") {
		if strings.Contains(line, `"request_id":"client-id-1"`) && strings.Contains(line, `"operation":"create-message"`) {
			found = true
		}
	}
	require.True(t, found, "the access log line carries the request id and operation:\n%s", srv.logs.String())
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// panicStore panics on MessageGet.
type panicStore struct{ *fakeStore }

func (panicStore) MessageGet(context.Context, uuid.UUID) (*store.Message, error) {
	panic("store exploded")
}

func TestPanicRecovery(t *testing.T) {
	srv := start(t, api.Deps{Store: panicStore{newFakeStore()}}, api.Config{})
	r := srv.do(t, keyAll, "GET", "/v1/message/"+someID, nil)
	requireProblem(t, r, 500, "X-Request-Id")
	require.NotContains(t, string(r.Body), "exploded")
	require.Contains(t, srv.logs.String(), "store exploded")
	require.Equal(t, 200, srv.do(t, "", "GET", "/livez", nil).Status, "the server lives on")
}

func TestMetrics(t *testing.T) {
	srv := start(t, api.Deps{Store: newFakeStore()}, api.Config{})
	require.Equal(t, 201, srv.do(t, keyAll, "POST", "/v1/message", `{"channel":"metered","payload":1}`).Status)
	require.Equal(t, 200, srv.do(t, keyAll, "GET", "/v1/channels/metered/poll", nil).Status)
	body := string(srv.do(t, keyAdmin, "GET", "/metrics", nil).Body)
	require.Contains(t, body, `smq_messages_created_total{channel="metered"} 1`)
	require.Contains(t, body, `smq_polls_total{channel="metered"} 1`)
	require.Contains(t, body, `smq_http_request_duration_seconds_count{code="201",operation="create-message"} 1`)
	require.Contains(t, body, `go_goroutines`)
}

// TestMetricsBatch checks the created count of a batch: by channel, dedup
// hits excluded.
func TestMetricsBatch(t *testing.T) {
	srv := start(t, api.Deps{Store: newFakeStore(), Buffer: newFakeBuffer()}, api.Config{})
	require.Equal(t, 201, srv.do(t, keyAll, "POST", "/v1/message", `{"channel":"a","payload":1,"dedup_key":"k"}`).Status)
	r := srv.do(t, keyAll, "POST", "/v1/messages", `{"messages":[{"channel":"a","payload":1},{"channel":"a","payload":2},`+
		`{"channel":"b","payload":3},{"channel":"a","payload":4,"dedup_key":"k"},{"channel":"a","payload":5}]}`)
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	body := string(srv.do(t, keyAdmin, "GET", "/metrics", nil).Body)
	require.Contains(t, body, `smq_messages_created_total{channel="a"} 4`)
	require.Contains(t, body, `smq_messages_created_total{channel="b"} 1`)
}

// TestHealth checks the node report cmd wires in.
func TestHealth(t *testing.T) {
	var ready atomic.Bool
	h := func(context.Context) api.NodeHealth {
		l := api.Layers{
			Producer: api.Layer{Status: api.Healthy}, Consumer: api.Layer{Status: api.Healthy},
			Buffer:    api.NewBufferLayer(api.Layer{Status: api.Healthy}, store.BufferStats{Kind: "wal", Depth: 3}, store.FlushStats{Flushed: 7}),
			Scheduler: api.Layer{Status: api.Healthy}, Janitor: api.Layer{Status: api.Healthy},
			Database: api.Layer{Status: api.Healthy}, Temporal: api.Layer{Status: api.Down, Reason: "dial tcp: refused"},
		}
		return api.NodeHealth{Ready: ready.Load(), NotReady: "replaying the WAL", Layers: l}
	}
	srv := start(t, api.Deps{Store: newFakeStore(), Health: h, NodeID: "n1", Region: "r1", Version: "1.2.3"}, api.Config{})
	requireProblem(t, srv.do(t, "", "GET", "/readyz", nil), 503, "replaying the WAL")
	ready.Store(true)
	require.Equal(t, 200, srv.do(t, "", "GET", "/readyz", nil).Status)

	r := srv.do(t, keyAdmin, "GET", "/v1/health", nil)
	require.Equal(t, 200, r.Status)
	var out struct {
		Nodes []struct {
			NodeID        string    `json:"node_id"`
			Region        string    `json:"region"`
			LastHeartbeat time.Time `json:"last_heartbeat"`
			Status        string    `json:"status"`
			Version       string    `json:"version"`
		} `json:"nodes"`
		Pagination api.Pagination `json:"pagination"`
		Node       api.ThisNode   `json:"node"`
	}
	r.Decode(t, &out)
	require.Len(t, out.Nodes, 1)
	require.Equal(t, api.Pagination{Limit: 100, Offset: 0, Count: 1}, out.Pagination)
	require.Equal(t, "n1", out.Node.NodeID)
	require.Equal(t, "1.2.3", out.Node.Version)
	require.Equal(t, api.Degraded, out.Node.Status, "Temporal down degrades the node")
	require.Equal(t, "dial tcp: refused", out.Node.Layers.Temporal.Reason)
	require.Equal(t, 3, out.Node.Layers.Buffer.Depth)
	require.EqualValues(t, 7, out.Node.Layers.Buffer.Flushed)
}

// TestAccessLogLine pins the access log line: its fields, in order, and
// the source for a handler that reports it.
func TestAccessLogLine(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{AddSource: true})).With("node", "n1")
	srv := start(t, api.Deps{Store: newFakeStore(), Logger: logger}, api.Config{})
	r := srv.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":1}`, "X-Request-Id", "client-id-1")
	require.Equal(t, 201, r.Status)
	r = srv.do(t, "", "GET", "/v1/nothing", nil, "X-Request-Id", "client-id-2")
	require.Equal(t, 404, r.Status)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, "%s", logs)
	for i, want := range []struct {
		fields string
		values map[string]any
	}{
		{"time level source msg node method path status bytes duration remote operation key request_id", map[string]any{
			"level": "INFO", "msg": "request", "node": "n1", "method": "POST", "path": "/v1/message", "status": float64(201),
			"operation": "create-message", "key": "producer", "request_id": "client-id-1",
		}},
		{"time level source msg node method path status bytes duration remote request_id", map[string]any{
			"level": "INFO", "msg": "request", "method": "GET", "path": "/v1/nothing", "status": float64(404), "request_id": "client-id-2",
		}},
	} {
		dec := json.NewDecoder(strings.NewReader(lines[i]))
		_, err := dec.Token()
		require.NoError(t, err)
		var fields []string
		for dec.More() {
			tok, err := dec.Token()
			require.NoError(t, err)
			fields = append(fields, tok.(string))
			var skip json.RawMessage
			require.NoError(t, dec.Decode(&skip))
		}
		require.Equal(t, want.fields, strings.Join(fields, " "), "line %s", lines[i])
		var line map[string]any
		require.NoError(t, json.Unmarshal([]byte(lines[i]), &line))
		for k, v := range want.values {
			require.Equal(t, v, line[k], "%s in %s", k, lines[i])
		}
		source := line["source"].(map[string]any)
		require.Contains(t, source["function"], "api.logRequest")
		require.True(t, strings.HasSuffix(source["file"].(string), "api/middleware.go"), "source %v", source)
	}
}
