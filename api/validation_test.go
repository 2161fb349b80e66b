package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
)

const someID = "0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f70"

// TestBadInput sends input that must be refused, and checks each gets the
// problem it deserves (never a 5xx) and changes nothing in the store.
func TestBadInput(t *testing.T) {
	fs := newFakeStore()
	srv := start(t, api.Deps{Store: fs, MaxPayload: 1024}, api.Config{})
	now := time.Now().Unix()
	big := `"` + strings.Repeat("x", 2000) + `"`
	huge := `"` + strings.Repeat("x", 200<<10) + `"`
	manyIDs := make([]string, 1001)
	for i := range manyIDs {
		manyIDs[i] = someID
	}
	manyMsgs := make([]map[string]any, 1001)
	for i := range manyMsgs {
		manyMsgs[i] = map[string]any{"channel": "c", "payload": 1}
	}

	cases := []struct {
		name    string
		method  string
		path    string
		body    any
		headers []string
		status  int
		want    []string
	}{
		{"malformed json", "POST", "/v1/message", `{"channel":`, nil, 400, nil},
		{"empty body", "POST", "/v1/message", ``, nil, 400, nil},
		{"unknown field", "POST", "/v1/message", `{"channel":"c","payload":1,"bogus":1}`, nil, 422, []string{"bogus"}},
		{"missing channel", "POST", "/v1/message", `{"payload":1}`, nil, 422, []string{"channel"}},
		{"bad channel", "POST", "/v1/message", `{"channel":"a b","payload":1}`, nil, 422, []string{"body.channel"}},
		{"sql in channel", "POST", "/v1/message", `{"channel":"x'; DROP TABLE messages;--","payload":1}`, nil, 422, []string{"body.channel"}},
		{"long channel", "POST", "/v1/message", fmt.Sprintf(`{"channel":%q,"payload":1}`, strings.Repeat("c", 129)), nil, 422, []string{"body.channel"}},
		{"missing payload", "POST", "/v1/message", `{"channel":"c"}`, nil, 422, []string{"payload"}},
		{"absurd scheduled_at", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":99999999999999}`, nil, 422, []string{"body.scheduled_at", "10 years"}},
		{"scheduled_at in ms", "POST", "/v1/message", fmt.Sprintf(`{"channel":"c","payload":1,"scheduled_at":%d}`, now*1000), nil, 422, []string{"body.scheduled_at", "milliseconds"}},
		{"scheduled_at year 3000", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":"3000-01-01T00:00:00Z"}`, nil, 422, []string{"body.scheduled_at", "10 years"}},
		{"scheduled_at words", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":"tomorrow"}`, nil, 422, []string{"body.scheduled_at", "RFC 3339"}},
		{"scheduled_at fraction", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":1700000000.5}`, nil, 422, []string{"scheduled_at"}},
		{"scheduled_at negative", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":-5}`, nil, 422, []string{"body.scheduled_at"}},
		{"scheduled_at bool", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":true}`, nil, 422, []string{"scheduled_at"}},
		{"scheduled_at and delay", "POST", "/v1/message", `{"channel":"c","payload":1,"scheduled_at":1700000000,"delay":"5s"}`, nil, 422, []string{"body.delay", "not both"}},
		{"delay words", "POST", "/v1/message", `{"channel":"c","payload":1,"delay":"forever"}`, nil, 422, []string{"body.delay"}},
		{"delay negative", "POST", "/v1/message", `{"channel":"c","payload":1,"delay":"-5s"}`, nil, 422, []string{"body.delay"}},
		{"delay negative seconds", "POST", "/v1/message", `{"channel":"c","payload":1,"delay":-1}`, nil, 422, []string{"delay"}},
		{"delay 11 years", "POST", "/v1/message", `{"channel":"c","payload":1,"delay":347155200}`, nil, 422, []string{"body.delay", "10 years"}},
		{"delay overflow", "POST", "/v1/message", `{"channel":"c","payload":1,"delay":"999999999999h"}`, nil, 422, []string{"body.delay"}},
		{"max_attempts 0", "POST", "/v1/message", `{"channel":"c","payload":1,"max_attempts":0}`, nil, 422, []string{"max_attempts"}},
		{"max_attempts 1001", "POST", "/v1/message", `{"channel":"c","payload":1,"max_attempts":1001}`, nil, 422, []string{"max_attempts"}},
		{"payload over limit", "POST", "/v1/message", `{"channel":"c","payload":` + big + `}`, nil, 413, []string{"payload", "1024"}},
		{"body over limit", "POST", "/v1/message", `{"channel":"c","payload":` + huge + `}`, nil, 413, nil},
		{"idempotency key differs", "POST", "/v1/message", `{"channel":"c","payload":1,"dedup_key":"a"}`, []string{"Idempotency-Key", "b"}, 422, []string{"Idempotency-Key"}},
		{"bad durability", "POST", "/v1/message?durability=maybe", `{"channel":"c","payload":1}`, nil, 422, []string{"durability"}},
		{"long dedup key", "POST", "/v1/message", fmt.Sprintf(`{"channel":"c","payload":1,"dedup_key":%q}`, strings.Repeat("k", 257)), nil, 422, []string{"dedup_key"}},

		{"batch empty", "POST", "/v1/messages", `{"messages":[]}`, nil, 422, []string{"messages"}},
		{"batch missing", "POST", "/v1/messages", `{}`, nil, 422, []string{"messages"}},
		{"batch 1001", "POST", "/v1/messages", map[string]any{"messages": manyMsgs}, nil, 422, []string{"messages"}},
		{"batch bad item", "POST", "/v1/messages", `{"messages":[{"channel":"c","payload":1},{"channel":"a b","payload":1}]}`, nil, 422, []string{"body.messages[1].channel"}},
		{"batch item delay", "POST", "/v1/messages", `{"messages":[{"channel":"c","payload":1,"delay":"soon"}]}`, nil, 422, []string{"body.messages[0].delay"}},
		{"batch payload over limit", "POST", "/v1/messages", `{"messages":[{"channel":"c","payload":` + big + `}]}`, nil, 413, []string{"messages[0].payload"}},

		{"get malformed id", "GET", "/v1/message/not-a-uuid", nil, nil, 422, []string{"id"}},
		{"get sql id", "GET", "/v1/message/1'%20OR%20'1'='1", nil, nil, 422, []string{"id"}},
		{"delete malformed id", "DELETE", "/v1/message/1234", nil, nil, 422, []string{"id"}},
		{"patch malformed id", "PATCH", "/v1/message/zzz", `{"delay":5}`, nil, 422, []string{"id"}},
		{"patch nothing", "PATCH", "/v1/message/" + someID, `{}`, nil, 422, []string{"give scheduled_at, delay or payload"}},
		{"patch both", "PATCH", "/v1/message/" + someID, `{"delay":5,"scheduled_at":1700000000}`, nil, 422, []string{"not both"}},
		{"patch unknown field", "PATCH", "/v1/message/" + someID, `{"channel":"other"}`, nil, 422, []string{"channel"}},
		{"patch absurd time", "PATCH", "/v1/message/" + someID, `{"scheduled_at":"9999-01-01T00:00:00Z"}`, nil, 422, []string{"body.scheduled_at"}},
		{"patch payload over limit", "PATCH", "/v1/message/" + someID, `{"payload":` + big + `}`, nil, 413, []string{"payload"}},

		{"poll max 0", "GET", "/v1/channels/c/poll?max=0", nil, nil, 422, []string{"max"}},
		{"poll max 10001", "GET", "/v1/channels/c/poll?max=10001", nil, nil, 422, []string{"max"}},
		{"poll visibility 0", "GET", "/v1/channels/c/poll?visibility_timeout=0", nil, nil, 422, []string{"visibility_timeout"}},
		{"poll visibility 12h+1s", "GET", "/v1/channels/c/poll?visibility_timeout=43201", nil, nil, 422, []string{"visibility_timeout"}},
		{"poll visibility string", "GET", "/v1/channels/c/poll?visibility_timeout=30s", nil, nil, 422, []string{"visibility_timeout"}},
		{"poll wait 21", "GET", "/v1/channels/c/poll?wait=21", nil, nil, 422, []string{"wait"}},
		{"poll wait negative", "GET", "/v1/channels/c/poll?wait=-1", nil, nil, 422, []string{"wait"}},
		{"poll wait fraction", "GET", "/v1/channels/c/poll?wait=1.5", nil, nil, 422, []string{"wait"}},
		{"poll bad channel", "GET", "/v1/channels/a%20b/poll", nil, nil, 422, []string{"channel"}},
		{"poll bad subsidize", "GET", "/v1/channels/c/poll?subsidize=perhaps", nil, nil, 422, []string{"subsidize"}},

		{"channels limit 0", "GET", "/v1/channels?limit=0", nil, nil, 422, []string{"limit"}},
		{"channels limit 1001", "GET", "/v1/channels?limit=1001", nil, nil, 422, []string{"limit"}},
		{"channels offset -1", "GET", "/v1/channels?offset=-1", nil, nil, 422, []string{"offset"}},
		{"stats bad channel", "GET", "/v1/channels/a%2Fb/stats", nil, nil, 422, []string{"channel"}},
		{"health limit 0", "GET", "/v1/health?limit=0", nil, nil, 422, []string{"limit"}},

		{"ack nothing", "POST", "/v1/messages/ack", `{}`, nil, 422, []string{"message_ids or receipts"}},
		{"ack both", "POST", "/v1/messages/ack", fmt.Sprintf(`{"message_ids":[%q],"receipts":["x"]}`, someID), nil, 422, []string{"not both"}},
		{"ack 1001 ids", "POST", "/v1/messages/ack", map[string]any{"message_ids": manyIDs}, nil, 422, []string{"message_ids"}},
		{"ack malformed id", "POST", "/v1/messages/ack", fmt.Sprintf(`{"message_ids":[%q,"nope"]}`, someID), nil, 422, []string{"body.message_ids[1]"}},
		{"ack malformed receipt", "POST", "/v1/messages/ack", `{"receipts":["nope"]}`, nil, 422, []string{"body.receipts[0]"}},
		{"ack ids not array", "POST", "/v1/messages/ack", `{"message_ids":"x"}`, nil, 422, []string{"message_ids"}},
		{"nack 1001 receipts", "POST", "/v1/messages/nack", map[string]any{"receipts": manyIDs}, nil, 422, []string{"receipts"}},
		{"nack bad delay", "POST", "/v1/messages/nack", fmt.Sprintf(`{"message_ids":[%q],"delay":"later"}`, someID), nil, 422, []string{"body.delay"}},
		{"nack long reason", "POST", "/v1/messages/nack", fmt.Sprintf(`{"message_ids":[%q],"reason":%q}`, someID, strings.Repeat("r", 4097)), nil, 422, []string{"reason"}},
		{"extend no receipts", "POST", "/v1/messages/extend", `{"receipts":[]}`, nil, 422, []string{"receipts"}},
		{"extend 1001 receipts", "POST", "/v1/messages/extend", map[string]any{"receipts": manyIDs}, nil, 422, []string{"receipts"}},
		{"extend visibility 0", "POST", "/v1/messages/extend", `{"receipts":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"visibility_timeout":0}`, nil, 422, []string{"body.visibility_timeout"}},
		{"extend visibility 13h", "POST", "/v1/messages/extend", `{"receipts":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"visibility_timeout":"13h"}`, nil, 422, []string{"body.visibility_timeout"}},

		{"unknown route", "GET", "/v1/nothing", nil, nil, 404, nil},
		{"wrong method", "PUT", "/v1/message", `{}`, nil, 405, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fs.writeCount()
			r := srv.do(t, keyAll, c.method, c.path, c.body, c.headers...)
			requireProblem(t, r, c.status, c.want...)
			require.Equal(t, before, fs.writeCount(), "bad input reached the store")
		})
	}
}

// TestAuth checks every operation of the OpenAPI document: no key and a
// wrong key get 401, a key without the operation's scope gets 403, and a
// key with it gets past auth. Only the probes are public.
func TestAuth(t *testing.T) {
	noScopes := api.Key{Name: "none", Secret: "no-scope-secret"}
	srv := start(t, api.Deps{Store: newFakeStore(), Keys: append(slices.Clone(testKeys), noScopes)}, api.Config{})

	var public []string
	ops := 0
	for path, item := range api.OpenAPI().Paths {
		for method, op := range map[string]*hop{
			"GET": hopOf(item.Get), "POST": hopOf(item.Post), "PATCH": hopOf(item.Patch), "DELETE": hopOf(item.Delete), "PUT": hopOf(item.Put),
		} {
			if op == nil {
				continue
			}
			ops++
			url := strings.NewReplacer("{id}", someID, "{channel}", "c").Replace(path)
			if len(op.scopes) == 0 {
				public = append(public, op.id)
				r := srv.do(t, "", method, url, nil)
				require.NotContains(t, []int{401, 403}, r.Status, "%s %s", method, path)
				continue
			}
			t.Run(op.id, func(t *testing.T) {
				requireProblem(t, srv.do(t, "", method, url, `{}`), 401, "api-key")
				requireProblem(t, srv.do(t, "wrong-secret", method, url, `{}`), 401, "invalid API key")
				requireProblem(t, srv.do(t, keyAll+"x", method, url, `{}`), 401)
				requireProblem(t, srv.do(t, noScopes.Secret, method, url, `{}`), 403, "lacks the scope")
				for _, k := range testKeys {
					allowed := slices.Contains(k.Scopes, api.ScopeAdmin)
					for _, sc := range k.Scopes {
						allowed = allowed || slices.Contains(op.scopes, string(sc))
					}
					r := srv.do(t, k.Secret, method, url, `{}`)
					if allowed {
						require.NotContains(t, []int{401, 403}, r.Status, "key %s on %s: %s", k.Name, op.id, r.Body)
					} else {
						requireProblem(t, r, 403, "lacks the scope", k.Name)
					}
					require.Less(t, r.Status, 500, "key %s on %s: %s", k.Name, op.id, r.Body)
				}
			})
		}
	}
	require.Equal(t, 14, ops)
	require.ElementsMatch(t, []string{"livez", "readyz"}, public, "only the probes may be public")

	t.Run("metrics", func(t *testing.T) {
		requireProblem(t, srv.do(t, "", "GET", "/metrics", nil), 401)
		requireProblem(t, srv.do(t, keyProduce, "GET", "/metrics", nil), 403)
		require.Equal(t, 200, srv.do(t, keyAdmin, "GET", "/metrics", nil).Status)
		require.Equal(t, 200, srv.do(t, "", "GET", "/metrics", nil, "Authorization", "Bearer "+keyAdmin).Status)
	})
	t.Run("logs never hold a key", func(t *testing.T) {
		logs := srv.logs.String()
		require.Contains(t, logs, `"key":"producer"`)
		for _, k := range append(testKeys, noScopes) {
			require.NotContains(t, logs, k.Secret)
		}
		require.NotContains(t, logs, "wrong-secret")
	})
}

// hop is what TestAuth needs of an operation.
type hop struct {
	id     string
	scopes []string
}

func hopOf(op *huma.Operation) *hop {
	if op == nil {
		return nil
	}
	h := &hop{id: op.OperationID}
	for _, req := range op.Security {
		for _, scopes := range req {
			h.scopes = append(h.scopes, scopes...)
		}
	}
	return h
}

func TestNoAuthWithoutKeys(t *testing.T) {
	srv := start(t, api.Deps{Store: newFakeStore(), Keys: []api.Key{}}, api.Config{})
	r := srv.do(t, "", "POST", "/v1/message", `{"channel":"c","payload":{"a":1}}`)
	require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Body)
	require.Equal(t, 200, srv.do(t, "", "GET", "/metrics", nil).Status)
}

func TestParseKeys(t *testing.T) {
	keys, err := api.ParseKeys("ingest=s1:produce, s2:consume+admin ,s3")
	require.NoError(t, err)
	require.Equal(t, []api.Key{
		{Name: "ingest", Secret: "s1", Scopes: []api.Scope{api.ScopeProduce}},
		{Name: "key2", Secret: "s2", Scopes: []api.Scope{api.ScopeConsume, api.ScopeAdmin}},
		{Name: "key3", Secret: "s3", Scopes: api.AllScopes},
	}, keys)
	_, err = api.ParseKeys("s1:write")
	require.ErrorContains(t, err, `unknown scope "write"`)
	_, err = api.ParseKeys("name=:produce")
	require.ErrorContains(t, err, "empty secret")
}
