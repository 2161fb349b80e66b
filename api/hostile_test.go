package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

// hostileConfig is the server configuration of the hostile tests: short
// header and body timeouts so that slow clients are cut off quickly, and a
// small header limit.
var hostileConfig = api.Config{
	ReadHeaderTimeout: 300 * time.Millisecond,
	ReadTimeout:       2 * time.Second,
	WriteTimeout:      30 * time.Second,
	IdleTimeout:       5 * time.Second,
	MaxHeaderBytes:    8 << 10,
}

// hostileBundle is a real SMQ HTTP server (api.NewServer, so with its
// timeouts and limits) on a fresh PostgreSQL database.
type hostileBundle struct {
	*testServer
	st   *postgres.Store
	addr string
}

func setupHostile(t *testing.T) *hostileBundle {
	t.Helper()
	return setupHostileWith(t, hostileConfig)
}

func setupHostileWith(t *testing.T, cfg api.Config) *hostileBundle {
	t.Helper()
	st, err := postgres.Open(context.Background(), pgtest.URL(t), postgres.Options{Region: "r1", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	logs := &syncBuffer{}
	d := api.Deps{Store: st, Notifier: st, Region: "r1", Keys: testKeys,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := api.NewServer(ln.Addr().String(), api.NewHandler(d, cfg), cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return &hostileBundle{
		testServer: &testServer{URL: "http://" + ln.Addr().String(), logs: logs},
		st:         st,
		addr:       ln.Addr().String(),
	}
}

// snapshot is a digest of every table a request could change.
func (b *hostileBundle) snapshot(t *testing.T) string {
	t.Helper()
	var out []string
	for _, table := range []string{"messages", "channels", "nodes", "flush_marks"} {
		var n int64
		var digest string
		err := b.st.Pool().QueryRow(t.Context(),
			`SELECT count(*), coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM `+table+` x`).Scan(&n, &digest)
		require.NoError(t, err, table)
		out = append(out, fmt.Sprintf("%s=%d/%s", table, n, digest))
	}
	return strings.Join(out, " ")
}

// deep returns n nested JSON arrays.
func deep(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// sqlStrings are classic injection payloads, each sent in every string
// field.
var sqlStrings = []string{
	`'; DROP TABLE messages; --`,
	`' OR '1'='1`,
	`1; DELETE FROM channels WHERE '1'='1`,
	`"; UPDATE messages SET status='READY'; --`,
	`$1 $2 $$ $$; TRUNCATE messages; $$`,
	`\'; SELECT pg_sleep(10); --`,
	`%' OR name LIKE '%`,
}

// TestHostileRequests sends requests no client should send to a real
// server on PostgreSQL: each gets the 4xx it deserves, never a 5xx, and
// changes nothing that is stored.
func TestHostileRequests(t *testing.T) {
	b := setupHostile(t)
	// Something to damage: a message in each state a hostile request could
	// reach, and the channels they made.
	seeded := b.seed(t)

	big := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	type hcase struct {
		name        string
		method      string
		path        string
		body        string
		contentType string // application/json unless set; "-" sends none
		status      int
		alt         int // another acceptable status, if any
		want        []string
	}
	cases := []hcase{
		// Oversized bodies: the create limit is the payload limit (1 MiB)
		// plus 64 KiB; other operations keep Huma's 1 MiB.
		{name: "create body 2 MiB", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":` + big(2<<20) + `}`, status: 413},
		{name: "create payload just over 1 MiB", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":` + big(1<<20) + `}`, status: 413, want: []string{"payload"}},
		{name: "batch body 17 MiB", method: "POST", path: "/v1/messages", body: `{"messages":[{"channel":"c","payload":` + big(17<<20) + `}]}`, status: 413},
		{name: "ack body 2 MiB", method: "POST", path: "/v1/messages/ack", body: `{"message_ids":[` + strings.Repeat(`"x",`, 1<<19) + `"x"]}`, status: 413},
		{name: "patch body 2 MiB", method: "PATCH", path: "/v1/message/" + seeded.pending.String(), body: `{"payload":` + big(2<<20) + `}`, status: 413},
		{name: "nack reason 2 MiB", method: "POST", path: "/v1/messages/nack", body: `{"message_ids":["` + someID + `"],"reason":` + big(2<<20) + `}`, status: 413},

		// Deep nesting, in the payload and as the whole body.
		{name: "payload nested 10000 deep", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":` + deep(10000) + `}`, status: 400},
		{name: "payload nested 100000 deep", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":` + deep(100000) + `}`, status: 400},
		{name: "body nested 10000 deep", method: "POST", path: "/v1/message", body: deep(10000), status: 400, alt: 422},
		{name: "objects nested 10000 deep", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":` + strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000) + `}`, status: 400},
		{name: "batch nested 10000 deep", method: "POST", path: "/v1/messages", body: `{"messages":` + deep(10000) + `}`, status: 400, alt: 422},
		{name: "ack nested 10000 deep", method: "POST", path: "/v1/messages/ack", body: `{"message_ids":` + deep(10000) + `}`, status: 400},
		{name: "nack delay nested 10000 deep", method: "POST", path: "/v1/messages/nack", body: `{"message_ids":["` + someID + `"],"delay":` + deep(10000) + `}`, status: 400},

		// Invalid UTF-8 (JSON text must be UTF-8) and NUL characters, which
		// PostgreSQL's text columns refuse.
		{name: "payload invalid utf-8", method: "POST", path: "/v1/message", body: "{\"channel\":\"c\",\"payload\":\"\xff\xfe\xc3\x28\"}", status: 422, want: []string{"body.payload", "UTF-8"}},
		{name: "batch payload invalid utf-8", method: "POST", path: "/v1/messages", body: "{\"messages\":[{\"channel\":\"c\",\"payload\":\"\xc3\x28\"}]}", status: 422, want: []string{"body.messages[0].payload", "UTF-8"}},
		{name: "patch payload invalid utf-8", method: "PATCH", path: "/v1/message/" + seeded.pending.String(), body: "{\"payload\":[\"\xed\xa0\x80\"]}", status: 422, want: []string{"body.payload", "UTF-8"}},
		{name: "channel invalid utf-8", method: "POST", path: "/v1/message", body: "{\"channel\":\"c\xff\",\"payload\":1}", status: 422, want: []string{"channel"}},
		{name: "dedup key NUL", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"dedup_key":"a\u0000b"}`, status: 422, want: []string{"body.dedup_key"}},
		{name: "batch dedup key NUL", method: "POST", path: "/v1/messages", body: `{"messages":[{"channel":"c","payload":1,"dedup_key":"\u0000"}]}`, status: 422, want: []string{"body.messages[0].dedup_key"}},
		{name: "nack reason NUL", method: "POST", path: "/v1/messages/nack", body: `{"message_ids":["` + seeded.leased.String() + `"],"reason":"x\u0000y"}`, status: 422, want: []string{"body.reason"}},
		{name: "channel NUL", method: "POST", path: "/v1/message", body: `{"channel":"c\u0000","payload":1}`, status: 422, want: []string{"channel"}},

		// Nulls where a list is required.
		{name: "batch messages null", method: "POST", path: "/v1/messages", body: `{"messages":null}`, status: 422, want: []string{"body.messages"}},
		{name: "extend receipts null", method: "POST", path: "/v1/messages/extend", body: `{"receipts":null}`, status: 422, want: []string{"body.receipts"}},
		{name: "ack ids null", method: "POST", path: "/v1/messages/ack", body: `{"message_ids":null}`, status: 422, want: []string{"body"}},

		// Negative and huge numbers, in queries and bodies.
		{name: "poll max -1", method: "GET", path: "/v1/channels/c/poll?max=-1", status: 422, want: []string{"max"}},
		{name: "poll max int64 overflow", method: "GET", path: "/v1/channels/c/poll?max=99999999999999999999", status: 422, want: []string{"max"}},
		{name: "poll max max int64", method: "GET", path: "/v1/channels/c/poll?max=9223372036854775807", status: 422, want: []string{"max"}},
		{name: "poll max 1e300", method: "GET", path: "/v1/channels/c/poll?max=1e300", status: 422, want: []string{"max"}},
		{name: "poll visibility -1", method: "GET", path: "/v1/channels/c/poll?visibility_timeout=-1", status: 422, want: []string{"visibility_timeout"}},
		{name: "poll visibility min int64", method: "GET", path: "/v1/channels/c/poll?visibility_timeout=-9223372036854775808", status: 422, want: []string{"visibility_timeout"}},
		{name: "poll visibility huge", method: "GET", path: "/v1/channels/c/poll?visibility_timeout=9223372036854775807", status: 422, want: []string{"visibility_timeout"}},
		{name: "poll wait huge", method: "GET", path: "/v1/channels/c/poll?wait=9223372036854775807", status: 422, want: []string{"wait"}},
		{name: "poll wait 1e300", method: "GET", path: "/v1/channels/c/poll?wait=1e300", status: 422, want: []string{"wait"}},
		{name: "channels offset huge", method: "GET", path: "/v1/channels?offset=99999999999999999999", status: 422, want: []string{"offset"}},
		{name: "health offset -1", method: "GET", path: "/v1/health?offset=-1", status: 422, want: []string{"offset"}},
		{name: "max_attempts -1", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"max_attempts":-1}`, status: 422, want: []string{"max_attempts"}},
		{name: "max_attempts max int64", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"max_attempts":9223372036854775807}`, status: 422, want: []string{"max_attempts"}},
		{name: "max_attempts 1e300", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"max_attempts":1e300}`, status: 422, want: []string{"max_attempts"}},
		{name: "max_attempts -1e300", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"max_attempts":-1e300}`, status: 422, want: []string{"max_attempts"}},
		{name: "max_attempts 1.5", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"max_attempts":1.5}`, status: 422, want: []string{"max_attempts"}},
		{name: "scheduled_at 1e300", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"scheduled_at":1e300}`, status: 422, want: []string{"body.scheduled_at"}},
		{name: "scheduled_at -1e300", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"scheduled_at":-1e300}`, status: 422, want: []string{"body.scheduled_at"}},
		{name: "scheduled_at 1e400", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"scheduled_at":1e400}`, status: 400, want: []string{"scheduled_at"}},
		{name: "scheduled_at max int64", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"scheduled_at":9223372036854775807}`, status: 422, want: []string{"body.scheduled_at"}},
		{name: "scheduled_at year 10000", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"scheduled_at":"10000-01-01T00:00:00Z"}`, status: 422, want: []string{"body.scheduled_at"}},
		{name: "delay 1e300", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"delay":1e300}`, status: 422, want: []string{"body.delay"}},
		{name: "delay -1e300", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"delay":-1e300}`, status: 422, want: []string{"body.delay"}},
		{name: "delay max duration", method: "POST", path: "/v1/message", body: `{"channel":"c","payload":1,"delay":"2562047h47m16.854775807s"}`, status: 422, want: []string{"body.delay"}},
		{name: "patch scheduled_at 1e300", method: "PATCH", path: "/v1/message/" + seeded.pending.String(), body: `{"scheduled_at":1e300}`, status: 422, want: []string{"body.scheduled_at"}},
		{name: "nack delay 1e300", method: "POST", path: "/v1/messages/nack", body: `{"message_ids":["` + seeded.leased.String() + `"],"delay":1e300}`, status: 422, want: []string{"body.delay"}},
		{name: "nack delay -1", method: "POST", path: "/v1/messages/nack", body: `{"message_ids":["` + seeded.leased.String() + `"],"delay":-1}`, status: 422, want: []string{"body.delay"}},
		{name: "extend visibility 1e300", method: "POST", path: "/v1/messages/extend", body: `{"receipts":["` + seeded.receipt + `"],"visibility_timeout":1e300}`, status: 422, want: []string{"body.visibility_timeout"}},
		{name: "extend visibility -1", method: "POST", path: "/v1/messages/extend", body: `{"receipts":["` + seeded.receipt + `"],"visibility_timeout":-1}`, status: 422, want: []string{"body.visibility_timeout"}},

		// Wrong content types.
		{name: "create as text/plain", method: "POST", path: "/v1/message", body: `channel=c&payload=1`, contentType: "text/plain", status: 415},
		{name: "create as form", method: "POST", path: "/v1/message", body: `channel=c&payload=1`, contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "create as xml", method: "POST", path: "/v1/message", body: `<message><channel>c</channel></message>`, contentType: "application/xml", status: 415},
		{name: "create as multipart", method: "POST", path: "/v1/message", body: "--x\r\n\r\n{}\r\n--x--\r\n", contentType: "multipart/form-data; boundary=x", status: 415},
		{name: "create as cbor garbage", method: "POST", path: "/v1/message", body: "\xff\xff\xff", contentType: "application/cbor", status: 415},
		{name: "create without content type", method: "POST", path: "/v1/message", body: `not json`, contentType: "-", status: 400},
		{name: "ack as text/plain", method: "POST", path: "/v1/messages/ack", body: `{"message_ids":["` + seeded.leased.String() + `"]}`, contentType: "text/plain", status: 415},
	}

	// SQL in every string field: where the field has a pattern, a 422;
	// where it is free text (dedup_key, payload, reason), see
	// TestHostileStringsStoredVerbatim.
	for i, s := range sqlStrings {
		q := url.QueryEscape(s)
		p := url.PathEscape(s)
		js, _ := json.Marshal(s)
		cases = append(cases,
			hcase{name: fmt.Sprintf("sql %d in channel", i), method: "POST", path: "/v1/message", body: fmt.Sprintf(`{"channel":%s,"payload":1}`, js), status: 422, want: []string{"body.channel"}},
			hcase{name: fmt.Sprintf("sql %d in batch channel", i), method: "POST", path: "/v1/messages", body: fmt.Sprintf(`{"messages":[{"channel":%s,"payload":1}]}`, js), status: 422, want: []string{"channel"}},
			hcase{name: fmt.Sprintf("sql %d in poll channel", i), method: "GET", path: "/v1/channels/" + p + "/poll", status: 422, want: []string{"channel"}},
			hcase{name: fmt.Sprintf("sql %d in stats channel", i), method: "GET", path: "/v1/channels/" + p + "/stats", status: 422, want: []string{"channel"}},
			hcase{name: fmt.Sprintf("sql %d in get id", i), method: "GET", path: "/v1/message/" + p, status: 422, want: []string{"id"}},
			hcase{name: fmt.Sprintf("sql %d in patch id", i), method: "PATCH", path: "/v1/message/" + p, body: `{"delay":5}`, status: 422, want: []string{"id"}},
			hcase{name: fmt.Sprintf("sql %d in delete id", i), method: "DELETE", path: "/v1/message/" + p, status: 422, want: []string{"id"}},
			hcase{name: fmt.Sprintf("sql %d in ack id", i), method: "POST", path: "/v1/messages/ack", body: fmt.Sprintf(`{"message_ids":[%s]}`, js), status: 422, want: []string{"body.message_ids[0]"}},
			hcase{name: fmt.Sprintf("sql %d in ack receipt", i), method: "POST", path: "/v1/messages/ack", body: fmt.Sprintf(`{"receipts":[%s]}`, js), status: 422, want: []string{"body.receipts[0]"}},
			hcase{name: fmt.Sprintf("sql %d in nack receipt", i), method: "POST", path: "/v1/messages/nack", body: fmt.Sprintf(`{"receipts":[%s],"reason":%s}`, js, js), status: 422, want: []string{"body.receipts[0]"}},
			hcase{name: fmt.Sprintf("sql %d in extend receipt", i), method: "POST", path: "/v1/messages/extend", body: fmt.Sprintf(`{"receipts":[%s]}`, js), status: 422, want: []string{"body.receipts[0]"}},
			hcase{name: fmt.Sprintf("sql %d in durability", i), method: "POST", path: "/v1/message?durability=" + q, body: `{"channel":"c","payload":1}`, status: 422, want: []string{"durability"}},
			hcase{name: fmt.Sprintf("sql %d in limit", i), method: "GET", path: "/v1/channels?limit=" + q, status: 422, want: []string{"limit"}},
			hcase{name: fmt.Sprintf("sql %d in max", i), method: "GET", path: "/v1/channels/c/poll?max=" + q, status: 422, want: []string{"max"}},
			hcase{name: fmt.Sprintf("sql %d in scheduled_at", i), method: "POST", path: "/v1/message", body: fmt.Sprintf(`{"channel":"c","payload":1,"scheduled_at":%s}`, js), status: 422, want: []string{"body.scheduled_at"}},
			hcase{name: fmt.Sprintf("sql %d in delay", i), method: "POST", path: "/v1/message", body: fmt.Sprintf(`{"channel":"c","payload":1,"delay":%s}`, js), status: 422, want: []string{"body.delay"}},
		)
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := b.snapshot(t)
			r := b.raw(t, c.method, c.path, c.body, c.contentType)
			require.Less(t, r.Status, 500, "body: %.300s", r.Body)
			if r.Status != c.alt {
				require.Equal(t, c.status, r.Status, "body: %.300s", r.Body)
			}
			require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), "body: %.300s", r.Body)
			for _, w := range c.want {
				require.Contains(t, string(r.Body), w, "body: %.300s", r.Body)
			}
			require.Equal(t, before, b.snapshot(t), "a refused request changed stored state")
		})
	}
	require.NotContains(t, b.logs.String(), `"level":"ERROR"`, "no hostile request is an internal error")
}

// seeded names the messages seed made.
type seeded struct {
	pending, leased uuid.UUID
	receipt         string
}

// seed creates a pending message and a leased one.
func (b *hostileBundle) seed(t *testing.T) seeded {
	t.Helper()
	var s seeded
	r := b.do(t, keyAll, "POST", "/v1/message", `{"channel":"c","payload":{"k":1},"delay":"1h"}`)
	require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Body)
	var out api.CreatedMessage
	r.Decode(t, &out)
	s.pending = out.MessageID

	r = b.do(t, keyAll, "POST", "/v1/message", `{"channel":"d","payload":{"k":2}}`)
	require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Body)
	_, err := b.st.MessagePromote(t.Context(), &store.MessagePromoteParams{Region: "r1", Limit: 100})
	require.NoError(t, err)
	r = b.do(t, keyAll, "GET", "/v1/channels/d/poll?visibility_timeout=3600", nil)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	var polled struct {
		Messages []api.PolledMessage `json:"messages"`
	}
	r.Decode(t, &polled)
	require.Len(t, polled.Messages, 1)
	s.leased, s.receipt = polled.Messages[0].ID, polled.Messages[0].Receipt
	return s
}

// raw sends body as is with contentType ("" for JSON, "-" for none).
func (b *hostileBundle) raw(t *testing.T, method, path, body, contentType string) *response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, b.URL+path, rd)
	require.NoError(t, err)
	switch contentType {
	case "":
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
	case "-":
	default:
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("api-key", keyAll)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// TestHostileStringsStoredVerbatim sends SQL, quotes, control characters
// and non-Latin text in the free-text fields: each is accepted and stored
// exactly as sent, and nothing else changes.
func TestHostileStringsStoredVerbatim(t *testing.T) {
	b := setupHostile(t)
	hostile := append([]string{"ünïcødé 🚀 \u202e", "tab\tnewline\n\"quote\"\\", strings.Repeat("'", 256)}, sqlStrings...)
	for i, s := range hostile {
		js, _ := json.Marshal(s)
		r := b.do(t, keyAll, "POST", "/v1/message", fmt.Sprintf(`{"channel":"h","payload":{"s":%s,%s:[%s]},"dedup_key":%s}`, js, js, js, js))
		require.Equal(t, http.StatusCreated, r.Status, "%q: %s", s, r.Body)
		var out api.CreatedMessage
		r.Decode(t, &out)
		// The same key again finds the first message: the key was matched
		// as a value, not as SQL.
		r = b.do(t, keyAll, "POST", "/v1/message", fmt.Sprintf(`{"channel":"h","payload":2,"dedup_key":%s}`, js))
		require.Equal(t, http.StatusOK, r.Status, "%q: %s", s, r.Body)
		require.Equal(t, out.MessageID.String(), r.JSON(t)["message_id"])

		m, err := b.st.MessageGet(t.Context(), out.MessageID)
		require.NoError(t, err)
		require.Equal(t, s, m.DedupKey)
		require.JSONEq(t, fmt.Sprintf(`{"s":%s,%s:[%s]}`, js, js, js), string(m.Payload))

		// A nack reason is kept verbatim as last_error.
		_, err = b.st.MessagePromote(t.Context(), &store.MessagePromoteParams{Region: "r1", Limit: 100})
		require.NoError(t, err)
		r = b.do(t, keyAll, "GET", "/v1/channels/h/poll?max=1", nil)
		require.Equal(t, http.StatusOK, r.Status)
		r = b.do(t, keyAll, "POST", "/v1/messages/nack", fmt.Sprintf(`{"message_ids":[%q],"reason":%s,"delay":"1h"}`, out.MessageID, js))
		require.Equal(t, http.StatusOK, r.Status, "%q: %s", s, r.Body)
		require.JSONEq(t, `{"success":true,"count":1}`, string(r.Body), "message %d", i)
		m, err = b.st.MessageGet(t.Context(), out.MessageID)
		require.NoError(t, err)
		require.Equal(t, s, m.LastError)
	}
	var n int
	require.NoError(t, b.st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM messages`).Scan(&n))
	require.Equal(t, len(hostile), n)
	r := b.do(t, keyAll, "GET", "/v1/channels", nil)
	require.JSONEq(t, `{"channels":["h"],"pagination":{"limit":100,"offset":0,"count":1}}`, string(r.Body))
}

// TestSlowClients checks the server's read limits over raw connections: a
// client that dribbles its headers, or its body, is cut off; oversized
// headers get 431. Nothing is stored.
func TestSlowClients(t *testing.T) {
	b := setupHostile(t)
	before := b.snapshot(t)

	t.Run("headers slower than ReadHeaderTimeout", func(t *testing.T) {
		conn := dial(t, b.addr)
		start := time.Now()
		_, err := io.WriteString(conn, "POST /v1/message HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
		// Dribble a header byte at a time until the server hangs up.
		for {
			if _, err = io.WriteString(conn, "X"); err != nil {
				break
			}
			if conn.closed(50 * time.Millisecond) {
				break
			}
			require.Less(t, time.Since(start), 5*time.Second, "the server kept a slowloris connection open")
		}
		took := time.Since(start)
		require.GreaterOrEqual(t, took, hostileConfig.ReadHeaderTimeout)
		require.Less(t, took, hostileConfig.ReadHeaderTimeout+2*time.Second)
		t.Logf("slow headers cut off after %s (ReadHeaderTimeout %s)", took.Round(time.Millisecond), hostileConfig.ReadHeaderTimeout)
	})

	t.Run("body slower than ReadTimeout", func(t *testing.T) {
		conn := dial(t, b.addr)
		start := time.Now()
		body := `{"channel":"slow","payload":"` + strings.Repeat("x", 1000) + `"}`
		_, err := fmt.Fprintf(conn, "POST /v1/message HTTP/1.1\r\nHost: x\r\napi-key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", keyAll, len(body))
		require.NoError(t, err)
		var status int
		for i := 0; i < len(body); i++ {
			if _, err = io.WriteString(conn, body[i:i+1]); err != nil {
				break
			}
			if conn.closed(50 * time.Millisecond) {
				break
			}
			require.Less(t, time.Since(start), 10*time.Second, "the server kept a slow body open")
		}
		// Whatever the server answered before closing, it was no success.
		status = conn.status()
		require.True(t, status == 0 || (status >= 400 && status < 500), "status %d", status)
		// The body must arrive within ReadTimeout of when the handler
		// starts to read it, the moment Huma sets the deadline again.
		took := time.Since(start)
		require.GreaterOrEqual(t, took, hostileConfig.ReadTimeout)
		require.Less(t, took, hostileConfig.ReadTimeout+2*time.Second)
		t.Logf("slow body cut off after %s (ReadTimeout %s), status %d", took.Round(time.Millisecond), hostileConfig.ReadTimeout, status)
	})

	t.Run("headers over MaxHeaderBytes", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", b.URL+"/v1/channels", nil)
		require.NoError(t, err)
		req.Header.Set("api-key", keyAll)
		req.Header.Set("X-Filler", strings.Repeat("a", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})

	t.Run("many small headers over MaxHeaderBytes", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), "POST", b.URL+"/v1/message", strings.NewReader(`{"channel":"c","payload":1}`))
		require.NoError(t, err)
		req.Header.Set("api-key", keyAll)
		req.Header.Set("Content-Type", "application/json")
		for i := range 2000 {
			req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})

	t.Run("chunked body over the limit", func(t *testing.T) {
		// No Content-Length: the limit must hold while reading.
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.WriteString(pw, `{"channel":"c","payload":"`)
			chunk := strings.Repeat("x", 64<<10)
			for range 40 {
				if _, err := io.WriteString(pw, chunk); err != nil {
					return
				}
			}
			_, _ = io.WriteString(pw, `"}`)
			_ = pw.Close()
		}()
		req, err := http.NewRequestWithContext(t.Context(), "POST", b.URL+"/v1/message", pr)
		require.NoError(t, err)
		req.Header.Set("api-key", keyAll)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		_ = pr.CloseWithError(errors.New("done"))
		if err == nil {
			defer resp.Body.Close()
			require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		}
	})

	t.Run("the server still serves", func(t *testing.T) {
		require.Equal(t, http.StatusOK, b.do(t, keyAll, "GET", "/v1/channels", nil).Status)
	})
	require.Equal(t, before, b.snapshot(t))
}

// rawConn is a client connection that notices when the server answers or
// hangs up, keeping what it read.
type rawConn struct {
	net.Conn
	got []byte
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &rawConn{Conn: conn}
}

// closed reports whether the server has closed the connection or written
// to it, waiting at most d to find out.
func (c *rawConn) closed(d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	_ = c.SetReadDeadline(time.Time{})
	if n > 0 {
		c.got = append(c.got, buf[:n]...)
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// status returns the status of the response the server wrote, or 0.
func (c *rawConn) status() int {
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(c.got), c.Conn)), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSlowBodyWithinReadTimeout sends a batch create whose body takes
// longer than Huma's default body deadline (5 s) but less than the
// server's ReadTimeout: the ReadTimeout decides, so it is created.
func TestSlowBodyWithinReadTimeout(t *testing.T) {
	cfg := hostileConfig
	cfg.ReadTimeout = 15 * time.Second
	b := setupHostileWith(t, cfg)
	conn := dial(t, b.addr)
	body := `{"messages":[` + strings.Repeat(`{"channel":"slow-batch","payload":"`+strings.Repeat("x", 200)+`"},`, 49) +
		`{"channel":"slow-batch","payload":"last"}]}`
	_, err := fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\napi-key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", keyAll, len(body))
	require.NoError(t, err)
	start := time.Now()
	const pieces = 14 // one every 500 ms: 6.5 s in all
	for i := range pieces {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		_, err := io.WriteString(conn, body[i*len(body)/pieces:(i+1)*len(body)/pieces])
		require.NoError(t, err, "the server hung up %s into the body", time.Since(start).Round(time.Millisecond))
	}
	require.Greater(t, time.Since(start), 6*time.Second)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", out)
	var created struct {
		Results []struct {
			MessageID string `json:"message_id"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal(out, &created))
	require.Len(t, created.Results, 50)
	for _, r := range created.Results {
		require.NotEmpty(t, r.MessageID, "%s", out)
	}
	t.Logf("a batch body sent over %s was created: %s", time.Since(start).Round(time.Millisecond), out[:min(len(out), 120)])
}

// TestWriteTimeout checks that the server bounds a response's time: a long
// poll that outlives WriteTimeout is cut off (in production WriteTimeout
// exceeds the longest poll; here it is shorter to see it act).
func TestWriteTimeout(t *testing.T) {
	cfg := hostileConfig
	cfg.WriteTimeout = time.Second
	b := setupHostileWith(t, cfg)
	start := time.Now()
	_, err := b.send(t.Context(), keyAll, "GET", "/v1/channels/c/poll?wait=3", nil)
	require.Error(t, err, "the answer came after WriteTimeout")
	require.Less(t, time.Since(start), 5*time.Second)
	t.Logf("a response due after WriteTimeout %s was cut off after %s: %v", cfg.WriteTimeout, time.Since(start).Round(time.Millisecond), err)
}
