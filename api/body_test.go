package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
)

// batchBody is a batch create of n valid messages.
func batchBody(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = `{"channel":"c","payload":1}`
	}
	return `{"messages":[` + strings.Join(items, ",") + `]}`
}

// TestCreateBodies pins how the create operations answer each kind of body
// (malformed, of the wrong type or content type, out of bounds, with
// unknown, missing, null, duplicate or differently cased fields): the
// status, and for a problem its detail and each error's location and
// message, sorted. The expectations are what Huma's schema validation
// answered before these operations validated their own bodies.
func TestCreateBodies(t *testing.T) {
	h := api.NewHandler(api.Deps{Store: newFakeStore(), Buffer: newFakeBuffer(), Keys: []api.Key{}}, api.Config{})
	cases := []struct {
		path        string
		contentType string // "-" sends none
		body        string
		status      int
		detail      string
		errors      []string // "location: message", sorted
	}{
		{"/v1/message", "application/json", `{"channel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json", ``, 400, "request body is required", nil},
		{"/v1/message", "application/json", `   `, 400, "validation failed", []string{"body: unexpected end of JSON input"}},
		{"/v1/message", "application/json", `{"channel":`, 400, "validation failed", []string{"body: unexpected end of JSON input"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1}x`, 400, "validation failed", []string{"body: invalid character 'x' after top-level value"}},
		{"/v1/message", "application/json", "{\"channel\":\"c\",\"payload\":1} \n", 201, "", nil},
		{"/v1/message", "application/json", `null`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/message", "application/json", `[]`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/message", "application/json", `"x"`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/message", "application/json", `{}`, 422, "validation failed", []string{"body: expected required property channel to be present", "body: expected required property payload to be present"}},
		{"/v1/message", "application/json", `{"payload":1}`, 422, "validation failed", []string{"body: expected required property channel to be present"}},
		{"/v1/message", "application/json", `{"channel":"c"}`, 422, "validation failed", []string{"body: expected required property payload to be present"}},
		{"/v1/message", "application/json", `{"channel":null,"payload":1}`, 422, "validation failed", []string{"body.channel: expected string"}},
		{"/v1/message", "application/json", `{"channel":1,"payload":1}`, 422, "validation failed", []string{"body.channel: expected string"}},
		{"/v1/message", "application/json", `{"channel":"","payload":1}`, 422, "validation failed", []string{"body.channel: expected length >= 1", "body.channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$"}},
		{"/v1/message", "application/json", `{"channel":"a b","payload":1}`, 422, "validation failed", []string{"body.channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$"}},
		{"/v1/message", "application/json", `{"channel":"` + strings.Repeat("c", 129) + `","payload":1}`, 422, "validation failed", []string{"body.channel: expected length <= 128", "body.channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$"}},
		{"/v1/message", "application/json", `{"channel":"` + strings.Repeat("c", 128) + `","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":null}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"bogus":1}`, 422, "validation failed", []string{"body.bogus: unexpected property"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"bogus":1,"other":2}`, 422, "validation failed", []string{"body.bogus: unexpected property", "body.other: unexpected property"}},
		{"/v1/message", "application/json", `{"Channel":"c","PAYLOAD":1}`, 201, "", nil},
		{"/v1/message", "application/json", `{"ch\u0061nnel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"\u0063","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","channel":"d","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"a b","Channel":"d","payload":1}`, 422, "validation failed", []string{"body.channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$"}},
		{"/v1/message", "application/json", `{"Channel":"a b","channel":"d","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":0}`, 422, "validation failed", []string{"body.max_attempts: expected number >= 1"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":1001}`, 422, "validation failed", []string{"body.max_attempts: expected number <= 1000"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":1.5}`, 422, "validation failed", []string{"body.max_attempts: expected integer"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":1.0}`, 422, "validation failed", []string{"body: json: cannot unmarshal number 1.0 into Go struct field MessageIn.max_attempts of type int"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":1e2}`, 422, "validation failed", []string{"body: json: cannot unmarshal number 1e2 into Go struct field MessageIn.max_attempts of type int"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":"5"}`, 422, "validation failed", []string{"body.max_attempts: expected integer"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":null}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":-1}`, 422, "validation failed", []string{"body.max_attempts: expected number >= 1"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":1e400}`, 400, "validation failed", []string{"body: json: cannot unmarshal number 1e400 into Go value of type float64"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":-0}`, 422, "validation failed", []string{"body.max_attempts: expected number >= 1"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":1000}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"max_attempts":01}`, 400, "validation failed", []string{"body: invalid character '1' after object key:value pair"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1e400}`, 400, "validation failed", []string{"body: json: cannot unmarshal number 1e400 into Go value of type float64"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":{"a":[1e400]}}`, 400, "validation failed", []string{"body: json: cannot unmarshal number 1e400 into Go value of type float64"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1e-400}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":-0.0e+10}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":true}`, 422, "validation failed", []string{"body.scheduled_at: expected value to match exactly one schema but matched none"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":null}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":{}}`, 422, "validation failed", []string{"body.scheduled_at: expected value to match exactly one schema but matched none"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":1.5}`, 422, "validation failed", []string{"body.scheduled_at: expected value to match exactly one schema but matched none"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":"x"}`, 422, "validation failed: body.scheduled_at: not an RFC 3339 time such as 2026-01-01T00:00:00Z, nor Unix seconds", []string{"body.scheduled_at: not an RFC 3339 time such as 2026-01-01T00:00:00Z, nor Unix seconds"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":"2030-01-01T00:00:00Z"}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"scheduled_at":1e400}`, 400, "validation failed", []string{"body: json: cannot unmarshal number 1e400 into Go value of type float64"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"delay":[]}`, 422, "validation failed", []string{"body.delay: expected value to match exactly one schema but matched none"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"delay":1e2}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"delay":"\u0035s"}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"dedup_key":"` + strings.Repeat("k", 257) + `"}`, 422, "validation failed", []string{"body.dedup_key: expected length <= 256"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"dedup_key":"` + strings.Repeat("é", 256) + `"}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"dedup_key":1}`, 422, "validation failed", []string{"body.dedup_key: expected string"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"dedup_key":null}`, 201, "", nil},
		{"/v1/message", "application/json", "{\"channel\":\"c\",\"payload\":1,\"dedup_key\":\"\xff\"}", 201, "", nil},
		{"/v1/message", "application/json", "{\"channel\":\"c\xff\",\"payload\":1}", 422, "validation failed", []string{"body.channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$"}},
		{"/v1/message", "application/json", "{\"channel\":\"c\",\"payload\":\"a\x01b\"}", 400, "validation failed", []string{"body: invalid character '\\x01' in string literal"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":"\x"}`, 400, "validation failed", []string{"body: invalid character 'x' in string escape code"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":[1,2,]}`, 400, "validation failed", []string{"body: invalid character ']' looking for beginning of value"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":01}`, 400, "validation failed", []string{"body: invalid character '1' after object key:value pair"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":tru}`, 400, "validation failed", []string{"body: invalid character '}' in literal true (expecting 'e')"}},
		{"/v1/message", "application/json", "\xef\xbb\xbf{\"channel\":\"c\",\"payload\":1}", 400, "validation failed", []string{"body: invalid character 'ï' looking for beginning of value"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":` + deep(9999) + `}`, 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":` + deep(10000) + `}`, 400, "validation failed", []string{"body: invalid character '[' exceeded max depth"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":{"a":"\ud800"}}`, 201, "", nil},
		{"/v1/message", "application/json", " \t\r\n{ \"channel\" : \"c\" , \"payload\" : [ 1 , { \"x\" : null } ] } ", 201, "", nil},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,}`, 400, "validation failed", []string{"body: invalid character '}' looking for beginning of object key string"}},
		{"/v1/message", "application/json", `{,"channel":"c","payload":1}`, 400, "validation failed", []string{"body: invalid character ',' looking for beginning of object key string"}},
		{"/v1/message", "application/json", `{"channel":"c" "payload":1}`, 400, "validation failed", []string{"body: invalid character '\"' after object key:value pair"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1}}`, 400, "validation failed", []string{"body: invalid character '}' after top-level value"}},
		{"/v1/message", "application/json", "{\"channel\":\"c\",\"payload\":\"\xff\"}", 422, "validation failed: body.payload: is not valid UTF-8 (JSON text must be UTF-8)", []string{"body.payload: is not valid UTF-8 (JSON text must be UTF-8)"}},
		{"/v1/message", "application/json", `{"channel":"c","payload":1,"\u0000":1}`, 422, "validation failed", []string{"body.\x00: unexpected property"}},
		{"/v1/message", "text/plain", `{"channel":"c","payload":1}`, 415, "validation failed", []string{"body: unknown content type: text/plain"}},
		{"/v1/message", "application/json; charset=utf-8", `{"channel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "application/vnd.smq+json", `{"channel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "application/json ; x", `{"channel":"c","payload":1}`, 415, "validation failed", []string{"body: unknown content type: application/json ; x"}},
		{"/v1/message", "-", `{"channel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "a;b+json", `{"channel":"c","payload":1}`, 415, "validation failed", []string{"body: unknown content type: a;b+json"}},
		{"/v1/message", "json", `{"channel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "application/xml", `{"channel":"c","payload":1}`, 415, "validation failed", []string{"body: unknown content type: application/xml"}},
		{"/v1/message", "", `{"channel":"c","payload":1}`, 201, "", nil},
		{"/v1/message", "text/plain", `not json`, 415, "validation failed", []string{"body: unknown content type: text/plain"}},
		{"/v1/message?durability=maybe", "application/json", `{"channel":"a b","payload":1}`, 422, "validation failed", []string{"body.channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$", "query.durability: expected value to be one of \"buffered, committed\""}},
		{"/v1/message?durability=maybe", "application/json", `{"channel":`, 400, "validation failed", []string{"body: unexpected end of JSON input", "query.durability: expected value to be one of \"buffered, committed\""}},
		{"/v1/message?durability=maybe", "text/plain", `{"channel":"c","payload":1}`, 415, "validation failed", []string{"body: unknown content type: text/plain", "query.durability: expected value to be one of \"buffered, committed\""}},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1}]}`, 201, "", nil},
		{"/v1/messages", "application/json", `{"messages":[]}`, 422, "validation failed", []string{"body.messages: expected array length >= 1"}},
		{"/v1/messages", "application/json", `{"messages":null}`, 422, "validation failed: body.messages: give 1 to 1000 messages", []string{"body.messages: give 1 to 1000 messages"}},
		{"/v1/messages", "application/json", `{}`, 422, "validation failed", []string{"body: expected required property messages to be present"}},
		{"/v1/messages", "application/json", `{"messages":{}}`, 422, "validation failed", []string{"body.messages: expected array"}},
		{"/v1/messages", "application/json", `{"messages":[1]}`, 422, "validation failed", []string{"body.messages[0]: expected object"}},
		{"/v1/messages", "application/json", `{"messages":[null]}`, 422, "validation failed", []string{"body.messages[0]: expected object"}},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1},{"payload":1}]}`, 422, "validation failed", []string{"body.messages[1]: expected required property channel to be present"}},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1,"bogus":1}]}`, 422, "validation failed", []string{"body.messages[0].bogus: unexpected property"}},
		{"/v1/messages", "application/json", batchBody(1001), 422, "validation failed", []string{"body.messages: expected array length <= 1000"}},
		{"/v1/messages", "application/json", batchBody(1000), 201, "", nil},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1}],"extra":1}`, 422, "validation failed", []string{"body.extra: unexpected property"}},
		{"/v1/messages", "application/json", `{"Messages":[{"channel":"c","payload":1}]}`, 201, "", nil},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1,"max_attempts":0}]}`, 422, "validation failed", []string{"body.messages[0].max_attempts: expected number >= 1"}},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1},]}`, 400, "validation failed", []string{"body: invalid character ']' looking for beginning of value"}},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"c","payload":1}],"messages":[{"channel":"c","payload":1}]}`, 201, "", nil},
		{"/v1/messages", "application/json", `[{"channel":"c","payload":1}]`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/messages", "application/json", `{"messages":[{"channel":"a b","payload":1},{"channel":"c","payload":1,"delay":true}]}`, 422, "validation failed", []string{"body.messages[0].channel: expected string to match pattern ^[A-Za-z0-9._-]{1,128}$", "body.messages[1].delay: expected value to match exactly one schema but matched none"}},
	}
	for i, c := range cases {
		name := c.body
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(fmt.Sprintf("%d %s", i, name), func(t *testing.T) {
			requireAnswer(t, h, c.path, c.contentType, c.body, c.status, c.detail, c.errors)
		})
	}
}

// requireAnswer sends body to path with contentType ("-" for none) and
// checks the status, and for a problem its detail and its errors'
// locations and messages, sorted.
func requireAnswer(t *testing.T, h http.Handler, path, contentType, body string, status int, detail string, errors []string) {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	if contentType != "-" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, status, rec.Code, "body: %.500s", rec.Body)
	if status < 300 {
		return
	}
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p struct {
		Status int
		Detail string
		Errors []struct{ Location, Message string }
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, status, p.Status)
	require.Equal(t, detail, p.Detail)
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Location+": "+e.Message)
	}
	slices.Sort(got)
	require.Equal(t, errors, got)
}

// TestCreateBodyCaseVariants checks the bounds of the values a create
// keeps when a body names a field twice in different cases: Huma's schema
// validation checks the field of the exact name, but encoding/json keeps
// the last, which must be within bounds too.
func TestCreateBodyCaseVariants(t *testing.T) {
	fs := newFakeStore()
	srv := start(t, api.Deps{Store: fs}, api.Config{})
	for _, c := range []struct{ body, want string }{
		{`{"channel":"c","payload":1,"max_attempts":5,"MAX_ATTEMPTS":5000}`, "body.max_attempts"},
		{`{"channel":"c","payload":1,"max_attempts":5,"Max_Attempts":-1}`, "body.max_attempts"},
		{`{"channel":"c","payload":1,"dedup_key":"k","Dedup_Key":"` + strings.Repeat("k", 257) + `"}`, "body.dedup_key"},
		{`{"channel":"c","payload":1,"Channel":"a b"}`, "body.channel"},
	} {
		requireProblem(t, srv.do(t, keyProduce, "POST", "/v1/message", c.body), 422, c.want)
		requireProblem(t, srv.do(t, keyProduce, "POST", "/v1/messages", `{"messages":[`+c.body+`]}`), 422, strings.Replace(c.want, "body.", "body.messages[0].", 1))
	}
	require.Zero(t, fs.writeCount())
}

// idsBody is an ack or nack body of n times id in field.
func idsBody(field, id string, n int) string {
	return `{"` + field + `":["` + strings.Repeat(id+`","`, n-1) + id + `"]}`
}

// TestLeaseBodies pins how ack and nack answer each kind of body, as
// TestCreateBodies does for the create operations.
func TestLeaseBodies(t *testing.T) {
	const receipt = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	h := api.NewHandler(api.Deps{Store: newFakeStore(), Keys: []api.Key{}}, api.Config{})
	cases := []struct {
		path        string
		contentType string
		body        string
		status      int
		detail      string
		errors      []string // "location: message", sorted
	}{
		{"/v1/messages/ack", "application/json", `{"message_ids":["` + someID + `"]}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"]}`, 200, "", nil},
		{"/v1/messages/ack", "application/json", `{"receipts":["` + receipt + `"]}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"receipts":["` + receipt + `"]}`, 200, "", nil},
		{"/v1/messages/ack", "application/json", `{}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/nack", "application/json", `{}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":[]}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":[]}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":null}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":null}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":null,"receipts":null}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":null,"receipts":null}`, 422, "validation failed: body: give 1 to 1000 message_ids or receipts", []string{"body: give 1 to 1000 message_ids or receipts"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":"x"}`, 422, "validation failed", []string{"body.message_ids: expected array"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":"x"}`, 422, "validation failed", []string{"body.message_ids: expected array"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":[1]}`, 422, "validation failed", []string{"body.message_ids[0]: expected string"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":[1]}`, 422, "validation failed", []string{"body.message_ids[0]: expected string"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":[null]}`, 422, "validation failed", []string{"body.message_ids[0]: expected string"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":[null]}`, 422, "validation failed", []string{"body.message_ids[0]: expected string"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":["` + someID + `"],"receipts":["` + receipt + `"]}`, 422, "validation failed: body: give message_ids or receipts, not both", []string{"body: give message_ids or receipts, not both"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"receipts":["` + receipt + `"]}`, 422, "validation failed: body: give message_ids or receipts, not both", []string{"body: give message_ids or receipts, not both"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":["` + someID + `",]}`, 400, "validation failed", []string{"body: invalid character ']' looking for beginning of value"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `",]}`, 400, "validation failed", []string{"body: invalid character ']' looking for beginning of value"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":["nope"]}`, 422, "validation failed: body.message_ids[0]: not a UUID", []string{"body.message_ids[0]: not a UUID"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["nope"]}`, 422, "validation failed: body.message_ids[0]: not a UUID", []string{"body.message_ids[0]: not a UUID"}},
		{"/v1/messages/ack", "application/json", `{"receipts":["nope"]}`, 422, "validation failed: body.receipts[0]: not a receipt from a poll", []string{"body.receipts[0]: not a receipt from a poll"}},
		{"/v1/messages/nack", "application/json", `{"receipts":["nope"]}`, 422, "validation failed: body.receipts[0]: not a receipt from a poll", []string{"body.receipts[0]: not a receipt from a poll"}},
		{"/v1/messages/ack", "application/json", `{"bogus":1}`, 422, "validation failed", []string{"body.bogus: unexpected property"}},
		{"/v1/messages/nack", "application/json", `{"bogus":1}`, 422, "validation failed", []string{"body.bogus: unexpected property"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":["` + someID + `"],"bogus":1}`, 422, "validation failed", []string{"body.bogus: unexpected property"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"bogus":1}`, 422, "validation failed", []string{"body.bogus: unexpected property"}},
		{"/v1/messages/ack", "application/json", `{"Message_IDs":["` + someID + `"]}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"Message_IDs":["` + someID + `"]}`, 200, "", nil},
		{"/v1/messages/ack", "application/json", `{"message_ids":["` + someID + `"],"message_ids":["nope"]}`, 422, "validation failed: body.message_ids[0]: not a UUID", []string{"body.message_ids[0]: not a UUID"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"message_ids":["nope"]}`, 422, "validation failed: body.message_ids[0]: not a UUID", []string{"body.message_ids[0]: not a UUID"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":["\u003` + someID + `"]}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"message_ids":["\u003` + someID + `"]}`, 200, "", nil},
		{"/v1/messages/ack", "application/json", idsBody("message_ids", someID, 1001), 422, "validation failed", []string{"body.message_ids: expected array length <= 1000"}},
		{"/v1/messages/nack", "application/json", idsBody("message_ids", someID, 1001), 422, "validation failed", []string{"body.message_ids: expected array length <= 1000"}},
		{"/v1/messages/ack", "application/json", idsBody("receipts", receipt, 1000), 200, "", nil},
		{"/v1/messages/nack", "application/json", idsBody("receipts", receipt, 1000), 200, "", nil},
		{"/v1/messages/ack", "application/json", `null`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/messages/nack", "application/json", `null`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/messages/ack", "application/json", `[]`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/messages/nack", "application/json", `[]`, 422, "validation failed", []string{"body: expected object"}},
		{"/v1/messages/ack", "application/json", ``, 400, "request body is required", nil},
		{"/v1/messages/nack", "application/json", ``, 400, "request body is required", nil},
		{"/v1/messages/ack", "application/json", ` `, 400, "validation failed", []string{"body: unexpected end of JSON input"}},
		{"/v1/messages/nack", "application/json", ` `, 400, "validation failed", []string{"body: unexpected end of JSON input"}},
		{"/v1/messages/ack", "application/json", "{\"message_ids\":[\"a\x01\"]}", 400, "validation failed", []string{"body: invalid character '\\x01' in string literal"}},
		{"/v1/messages/nack", "application/json", "{\"message_ids\":[\"a\x01\"]}", 400, "validation failed", []string{"body: invalid character '\\x01' in string literal"}},
		{"/v1/messages/ack", "application/json", "{\"message_ids\":[\"\xff\"]}", 422, "validation failed: body.message_ids[0]: not a UUID", []string{"body.message_ids[0]: not a UUID"}},
		{"/v1/messages/nack", "application/json", "{\"message_ids\":[\"\xff\"]}", 422, "validation failed: body.message_ids[0]: not a UUID", []string{"body.message_ids[0]: not a UUID"}},
		{"/v1/messages/ack", "application/json", `{"message_ids":{}}`, 422, "validation failed", []string{"body.message_ids: expected array"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":{}}`, 422, "validation failed", []string{"body.message_ids: expected array"}},
		{"/v1/messages/ack", "application/json", `{"receipts":[{}]}`, 422, "validation failed", []string{"body.receipts[0]: expected string"}},
		{"/v1/messages/nack", "application/json", `{"receipts":[{}]}`, 422, "validation failed", []string{"body.receipts[0]: expected string"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":"5s","reason":"boom"}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":5}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":null,"reason":null}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":true}`, 422, "validation failed", []string{"body.delay: expected value to match exactly one schema but matched none"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":1.5}`, 422, "validation failed", []string{"body.delay: expected value to match exactly one schema but matched none"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":"later"}`, 422, "validation failed: body.delay: not a duration such as \"90s\" or \"3h\", nor whole seconds", []string{"body.delay: not a duration such as \"90s\" or \"3h\", nor whole seconds"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":-1}`, 422, "validation failed: body.delay: must be between 0s and 10 years", []string{"body.delay: must be between 0s and 10 years"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"delay":1e400}`, 400, "validation failed", []string{"body: json: cannot unmarshal number 1e400 into Go value of type float64"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"reason":1}`, 422, "validation failed", []string{"body.reason: expected string"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"reason":"` + strings.Repeat("r", 4097) + `"}`, 422, "validation failed", []string{"body.reason: expected length <= 4096"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"reason":"` + strings.Repeat("é", 4096) + `"}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"reason":"a\u0000b"}`, 422, "validation failed: body.reason: must not contain NUL (\\u0000) characters", []string{"body.reason: must not contain NUL (\\u0000) characters"}},
		{"/v1/messages/nack", "application/json", `{"message_ids":["` + someID + `"],"reason":"line\nbreak"}`, 200, "", nil},
		{"/v1/messages/nack", "application/json", "{\"message_ids\":[\"" + someID + "\"],\"reason\":\"\xff\"}", 200, "", nil},
		{"/v1/messages/ack", "text/plain", `{"message_ids":["` + someID + `"]}`, 415, "validation failed", []string{"body: unknown content type: text/plain"}},
		{"/v1/messages/nack", "application/json; charset=utf-8", `{"message_ids":["` + someID + `"]}`, 200, "", nil},
	}
	for i, c := range cases {
		name := c.path[len("/v1/messages/"):] + " " + c.body
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(fmt.Sprintf("%d %s", i, name), func(t *testing.T) {
			requireAnswer(t, h, c.path, c.contentType, c.body, c.status, c.detail, c.errors)
		})
	}
}
