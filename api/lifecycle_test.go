package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

// fastBackoff makes retries due at once, so tests need not wait for them.
var fastBackoff = store.Backoff{Base: time.Millisecond, Factor: 1, Cap: time.Millisecond}

// pgBundle is an SMQ handler on a fresh PostgreSQL database.
type pgBundle struct {
	*testServer
	st *postgres.Store
}

func setupPG(t *testing.T, d api.Deps) *pgBundle {
	t.Helper()
	url := pgtest.URL(t)
	st, err := postgres.Open(context.Background(), url, postgres.Options{Region: "r1", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	d.Store, d.Notifier, d.Region = st, st, "r1"
	return &pgBundle{testServer: start(t, d, api.Config{}), st: st}
}

// create posts one message and returns its id.
func (b *pgBundle) create(t *testing.T, body string, headers ...string) uuid.UUID {
	t.Helper()
	r := b.do(t, keyProduce, "POST", "/v1/message", body, headers...)
	require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Body)
	var out api.CreatedMessage
	r.Decode(t, &out)
	return out.MessageID
}

// promote makes every due message ready, as the scheduler would.
func (b *pgBundle) promote(t *testing.T) int {
	t.Helper()
	p, err := b.st.MessagePromote(t.Context(), &store.MessagePromoteParams{Region: "r1", Limit: 10000})
	require.NoError(t, err)
	return p.Count
}

// poll polls channel with query and returns the messages.
func (b *pgBundle) poll(t *testing.T, channel, query string) []api.PolledMessage {
	t.Helper()
	r := b.do(t, keyConsume, "GET", "/v1/channels/"+channel+"/poll?"+query, nil)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	var out struct {
		Messages []api.PolledMessage `json:"messages"`
	}
	r.Decode(t, &out)
	return out.Messages
}

// pollE is poll for goroutines other than the test's.
func (b *pgBundle) pollE(ctx context.Context, channel, query string) ([]api.PolledMessage, error) {
	r, err := b.send(ctx, keyConsume, "GET", "/v1/channels/"+channel+"/poll?"+query, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("poll: %d %s", r.Status, r.Body)
	}
	var out struct {
		Messages []api.PolledMessage `json:"messages"`
	}
	return out.Messages, json.Unmarshal(r.Body, &out)
}

// get returns a message as GET shows it.
func (b *pgBundle) get(t *testing.T, id uuid.UUID) api.MessageOut {
	t.Helper()
	r := b.do(t, keyProduce, "GET", "/v1/message/"+id.String(), nil)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	var out api.MessageOut
	r.Decode(t, &out)
	return out
}

// eventually polls channel (promoting due messages first) until it yields
// a message, or fails after a deadline.
func (b *pgBundle) eventually(t *testing.T, channel string) api.PolledMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.promote(t)
		if msgs := b.poll(t, channel, "max=1"); len(msgs) > 0 {
			return msgs[0]
		}
		runtimeYield()
	}
	t.Fatalf("no message on %s within the deadline", channel)
	return api.PolledMessage{}
}

// runtimeYield paces condition loops without fixed sleeps of any length
// that matters.
func runtimeYield() { time.Sleep(5 * time.Millisecond) }

func TestLifecycle(t *testing.T) {
	b := setupPG(t, api.Deps{Backoff: store.Backoff{Base: 50 * time.Millisecond, Factor: 2, Cap: time.Second}})

	// create → poll → ack
	id := b.create(t, `{"channel":"orders","payload":{"order":42},"max_attempts":3}`)
	m := b.get(t, id)
	require.Equal(t, "orders", m.Channel)
	require.Equal(t, 3, m.MaxAttempts)
	require.False(t, m.Buffered)
	require.Equal(t, "r1", m.Region, "a message names the region that owns it")
	require.JSONEq(t, `{"order":42}`, string(m.Payload))

	got := b.eventually(t, "orders")
	require.Equal(t, id, got.ID)
	require.Equal(t, "ACQUIRED", got.Status)
	require.Equal(t, 1, got.Attempts)
	require.Equal(t, 0, got.RetryCount)
	require.JSONEq(t, `{"order":42}`, string(got.Payload))
	require.WithinDuration(t, got.AcquiredAt.Add(30*time.Second), got.LeasedUntil, time.Second)
	require.NotEmpty(t, got.Receipt)
	require.Equal(t, "ACQUIRED", b.get(t, id).Status)
	require.Empty(t, b.poll(t, "orders", ""), "a leased message is not delivered twice")

	r := b.do(t, keyConsume, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{got.Receipt}})
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	require.JSONEq(t, `{"success":true,"count":1}`, string(r.Body))
	requireProblem(t, b.do(t, keyProduce, "GET", "/v1/message/"+id.String(), nil), 404)

	// nack with backoff → redelivered, then dead-lettered after max_attempts
	id = b.create(t, `{"channel":"orders","payload":"retry me","max_attempts":2}`)
	first := b.eventually(t, "orders")
	require.Equal(t, id, first.ID)
	nackedAt := time.Now()
	r = b.do(t, keyConsume, "POST", "/v1/messages/nack", map[string]any{"receipts": []string{first.Receipt}, "reason": "downstream 503"})
	require.JSONEq(t, `{"success":true,"count":1}`, string(r.Body))
	m = b.get(t, id)
	require.Equal(t, "PENDING", m.Status)
	require.True(t, m.ScheduledAt.After(nackedAt.Add(-time.Second)), "the retry waits a backoff from the nack")
	require.Equal(t, "downstream 503", m.LastError)

	second := b.eventually(t, "orders")
	require.Equal(t, id, second.ID)
	require.Equal(t, 2, second.Attempts)
	require.Equal(t, 1, second.RetryCount)
	require.NotEqual(t, first.Receipt, second.Receipt)

	r = b.do(t, keyConsume, "POST", "/v1/messages/nack", map[string]any{"message_ids": []string{id.String()}, "reason": "still failing"})
	require.JSONEq(t, `{"success":true,"count":1}`, string(r.Body))
	dead := b.eventually(t, "orders.DLQ")
	require.Equal(t, id, dead.ID)
	require.Equal(t, "orders.DLQ", dead.Channel)
	require.Equal(t, "orders", dead.OriginalChannel)
	require.Equal(t, "still failing", dead.LastError)
	require.JSONEq(t, `"retry me"`, string(dead.Payload))
	require.Empty(t, b.poll(t, "orders", ""))

	r = b.do(t, keyConsume, "GET", "/v1/channels", nil)
	require.Equal(t, 200, r.Status)
	require.JSONEq(t, `{"channels":["orders","orders.DLQ"],"pagination":{"limit":100,"offset":0,"count":2}}`, string(r.Body))

	// extend, then stats
	r = b.do(t, keyConsume, "POST", "/v1/messages/extend", map[string]any{"receipts": []string{dead.Receipt}, "visibility_timeout": "1h"})
	require.JSONEq(t, `{"success":true,"count":1}`, string(r.Body))
	require.WithinDuration(t, time.Now().Add(time.Hour), *b.get(t, id).LeasedUntil, 5*time.Second)

	b.create(t, `{"channel":"orders","payload":1,"delay":"90m"}`)
	r = b.do(t, keyConsume, "GET", "/v1/channels/orders/stats", nil)
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	var st struct {
		ByStatus  map[string]int64 `json:"by_status"`
		Total     int64            `json:"total"`
		DueByHour []int64          `json:"due_by_hour"`
	}
	r.Decode(t, &st)
	require.EqualValues(t, 1, st.ByStatus["PENDING"])
	require.EqualValues(t, 1, st.Total)
	require.Len(t, st.DueByHour, 24)
	require.EqualValues(t, 1, st.DueByHour[1])

	// delete
	r = b.do(t, keyProduce, "DELETE", "/v1/message/"+id.String(), nil)
	require.Equal(t, 200, r.Status)
	require.Equal(t, id.String(), r.JSON(t)["message_id"])
	requireProblem(t, b.do(t, keyProduce, "DELETE", "/v1/message/"+id.String(), nil), 404)

	// health lists this database's nodes
	require.NoError(t, b.st.NodeHeartbeat(t.Context(), &store.Node{ID: "n1", Region: "r1", Version: "v1"}))
	r = b.do(t, keyAdmin, "GET", "/v1/health", nil)
	require.Equal(t, 200, r.Status)
	require.Equal(t, "n1", r.JSON(t)["nodes"].([]any)[0].(map[string]any)["node_id"])
	require.Equal(t, 200, b.do(t, "", "GET", "/readyz", nil).Status)
}

// TestStaleReceipt checks that a consumer whose lease expired cannot ack
// the message another consumer now holds.
func TestStaleReceipt(t *testing.T) {
	b := setupPG(t, api.Deps{})
	id := b.create(t, `{"channel":"c","payload":1}`)
	b.promote(t)
	a := b.poll(t, "c", "visibility_timeout=1")
	require.Len(t, a, 1)

	// The janitor puts the expired lease back; the scheduler makes it ready.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, err := b.st.MessageRecover(t.Context(), &store.MessageRecoverParams{Region: "r1", Limit: 10, Backoff: fastBackoff})
		require.NoError(t, err)
		if rec.Retried == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the lease never expired")
		runtimeYield()
	}
	bMsg := b.eventually(t, "c")
	require.Equal(t, id, bMsg.ID)
	require.Equal(t, 2, bMsg.Attempts)
	require.Equal(t, "lease expired", bMsg.LastError)

	for _, path := range []string{"/v1/messages/ack", "/v1/messages/nack", "/v1/messages/extend"} {
		r := b.do(t, keyConsume, "POST", path, map[string]any{"receipts": []string{a[0].Receipt}})
		requireProblem(t, r, 409, "stale")
	}
	// All or nothing: a current receipt beside a stale one changes nothing.
	r := b.do(t, keyConsume, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{bMsg.Receipt, a[0].Receipt}})
	requireProblem(t, r, 409)
	m := b.get(t, id)
	require.Equal(t, "ACQUIRED", m.Status, "the stale ack changed nothing")
	require.Equal(t, 2, m.Attempts)
	require.True(t, bMsg.LeasedUntil.Equal(*m.LeasedUntil), "the stale extend changed nothing")

	r = b.do(t, keyConsume, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{bMsg.Receipt}})
	require.JSONEq(t, `{"success":true,"count":1}`, string(r.Body))
}

// A receipt past its lease's end is stale before the janitor has swept
// it: nobody else can hold the message yet, but its consumer is told it
// overran, whenever the janitor last ran.
func TestExpiredReceipt(t *testing.T) {
	b := setupPG(t, api.Deps{})
	b.create(t, `{"channel":"c","payload":1}`)
	b.promote(t)
	a := b.poll(t, "c", "visibility_timeout=1")
	require.Len(t, a, 1)
	time.Sleep(time.Until(a[0].LeasedUntil) + 50*time.Millisecond)
	for _, path := range []string{"/v1/messages/extend", "/v1/messages/ack", "/v1/messages/nack"} {
		r := b.do(t, keyConsume, "POST", path, map[string]any{"receipts": []string{a[0].Receipt}})
		requireProblem(t, r, 409, "stale")
	}
}

// The dead-letter channel of a channel with the longest name allowed is
// four characters longer, and can be polled.
func TestDeadLetterOfALongChannel(t *testing.T) {
	b := setupPG(t, api.Deps{})
	ch := strings.Repeat("a", 128)
	id := b.create(t, `{"channel":"`+ch+`","payload":1,"max_attempts":1}`)
	b.promote(t)
	got := b.poll(t, ch, "")
	require.Len(t, got, 1)
	r := b.do(t, keyConsume, "POST", "/v1/messages/nack", map[string]any{"receipts": []string{got[0].Receipt}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.Equal(t, ch+".DLQ", b.get(t, id).Channel)
	dead := b.poll(t, ch+".DLQ", "")
	require.Len(t, dead, 1)
	require.Equal(t, id, dead[0].ID)
	r = b.do(t, keyConsume, "GET", "/v1/channels/"+ch+".DLQ/stats", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r = b.do(t, keyConsume, "GET", "/v1/channels/"+ch+"x.DLQ/poll", nil)
	requireProblem(t, r, 422)
}

func TestDedup(t *testing.T) {
	b := setupPG(t, api.Deps{})
	r := b.do(t, keyProduce, "POST", "/v1/message", `{"channel":"c","payload":1,"dedup_key":"order-7","delay":"1h"}`)
	require.Equal(t, 201, r.Status)
	var first api.CreatedMessage
	r.Decode(t, &first)

	for _, c := range []struct {
		body    string
		headers []string
	}{
		{`{"channel":"c","payload":2,"dedup_key":"order-7"}`, nil},
		{`{"channel":"c","payload":3}`, []string{"Idempotency-Key", "order-7"}},
		{`{"channel":"c","payload":4,"dedup_key":"order-7"}`, []string{"Idempotency-Key", "order-7"}},
	} {
		r := b.do(t, keyProduce, "POST", "/v1/message?durability=committed", c.body, c.headers...)
		require.Equal(t, 200, r.Status, "body: %s", r.Body)
		var again api.CreatedMessage
		r.Decode(t, &again)
		require.Equal(t, first.MessageID, again.MessageID)
		require.True(t, first.ScheduledAt.Equal(again.ScheduledAt), "the first message's time, not the retry's")
		require.True(t, first.CreatedAt.Equal(again.CreatedAt))
	}
	require.JSONEq(t, `1`, string(b.get(t, first.MessageID).Payload), "nothing was changed")

	other := b.create(t, `{"channel":"d","payload":1,"dedup_key":"order-7"}`)
	require.NotEqual(t, first.MessageID, other, "dedup keys are per channel")

	r = b.do(t, keyProduce, "POST", "/v1/messages", `{"messages":[
		{"channel":"c","payload":1,"dedup_key":"order-7"},
		{"channel":"c","payload":1,"dedup_key":"order-8"},
		{"channel":"c","payload":1,"dedup_key":"order-8"},
		{"channel":"c","payload":1}]}`)
	require.Equal(t, 201, r.Status, "body: %s", r.Body)
	var res api.BatchResults
	r.Decode(t, &res)
	require.Equal(t, "existing", res.Results[0].Status)
	require.Equal(t, first.MessageID, res.Results[0].MessageID)
	require.Equal(t, "created", res.Results[1].Status)
	require.Equal(t, "existing", res.Results[2].Status)
	require.Equal(t, res.Results[1].MessageID, res.Results[2].MessageID)
	require.Equal(t, "created", res.Results[3].Status)
}

// TestPatch checks rescheduling and payload replacement, and 409 once
// leased.
func TestPatch(t *testing.T) {
	b := setupPG(t, api.Deps{})
	id := b.create(t, `{"channel":"c","payload":"old","delay":"1h"}`)
	require.Zero(t, b.promote(t))

	r := b.do(t, keyProduce, "PATCH", "/v1/message/"+id.String(), `{"scheduled_at":0,"payload":{"new":true}}`)
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	var m api.MessageOut
	r.Decode(t, &m)
	require.Equal(t, id, m.ID)
	require.JSONEq(t, `{"new":true}`, string(m.Payload))
	require.WithinDuration(t, time.Now(), m.ScheduledAt, 5*time.Second, "a past time means now")

	got := b.eventually(t, "c")
	require.Equal(t, id, got.ID)
	require.JSONEq(t, `{"new":true}`, string(got.Payload))
	requireProblem(t, b.do(t, keyProduce, "PATCH", "/v1/message/"+id.String(), `{"delay":"1h"}`), 409, "leased")
	requireProblem(t, b.do(t, keyProduce, "PATCH", "/v1/message/"+uuid.NewString(), `{"delay":"1h"}`), 404)
}

// TestRaces runs PATCH and DELETE against polling consumers: every message
// ends up either deleted or acked, never both, and nothing fails.
func TestRaces(t *testing.T) {
	b := setupPG(t, api.Deps{})
	const n = 60
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"channel": "race", "payload": i}
	}
	r := b.do(t, keyProduce, "POST", "/v1/messages", map[string]any{"messages": items})
	require.Equal(t, 201, r.Status)
	var res api.BatchResults
	r.Decode(t, &res)
	b.promote(t) // already-due messages are inserted READY; promote any stragglers
	ctx := t.Context()

	var (
		mu      sync.Mutex // guards acked and deleted
		acked   = map[uuid.UUID]int{}
		deleted = map[uuid.UUID]int{}
		wg      sync.WaitGroup
		done    = make(chan struct{})
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				msgs, err := b.pollE(ctx, "race", "max=3")
				if err != nil {
					t.Error(err)
					return
				}
				for _, m := range msgs {
					r, err := b.send(ctx, keyConsume, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{m.Receipt}})
					switch {
					case err != nil:
						t.Error(err)
						return
					case r.Status == 200:
						mu.Lock()
						acked[m.ID]++
						mu.Unlock()
					case r.Status != 409:
						t.Errorf("ack: %d %s", r.Status, r.Body)
					}
				}
			}
		})
	}
	var editors sync.WaitGroup
	editors.Go(func() {
		for _, res := range res.Results {
			r, err := b.send(ctx, keyProduce, "PATCH", "/v1/message/"+res.MessageID.String(), `{"payload":"patched","delay":0}`)
			if err != nil || !slices.Contains([]int{200, 404, 409}, r.Status) {
				t.Errorf("patch: %v %+v", err, r)
			}
		}
	})
	editors.Go(func() {
		for i := len(res.Results) - 1; i >= 0; i-- {
			r, err := b.send(ctx, keyProduce, "DELETE", "/v1/message/"+res.Results[i].MessageID.String(), nil)
			if err != nil || !slices.Contains([]int{200, 404}, r.Status) {
				t.Errorf("delete: %v %+v", err, r)
				return
			}
			if r.Status == 200 {
				mu.Lock()
				deleted[res.Results[i].MessageID]++
				mu.Unlock()
			}
		}
	})
	editors.Wait()
	// Whatever a PATCH made pending again is due now; let the consumers
	// drain it.
	b.promote(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.promote(t)
		mu.Lock()
		total := len(acked) + len(deleted)
		mu.Unlock()
		if total == n {
			break
		}
		if !time.Now().Before(deadline) || t.Failed() {
			close(done)
			wg.Wait()
			t.Fatalf("only %d of %d messages were acked or deleted", total, n)
		}
		runtimeYield()
	}
	close(done)
	wg.Wait()
	for _, res := range res.Results {
		require.Equal(t, 1, acked[res.MessageID]+deleted[res.MessageID], "message %s", res.MessageID)
	}
	r = b.do(t, keyConsume, "GET", "/v1/channels/race/stats", nil)
	require.EqualValues(t, 0, r.JSON(t)["total"])
}

// TestConcurrentConsumers has 20 consumers drain one channel: each message
// goes to exactly one of them and none is lost.
func TestConcurrentConsumers(t *testing.T) {
	b := setupPG(t, api.Deps{})
	const n = 1000
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"channel": "work", "payload": i}
	}
	r := b.do(t, keyProduce, "POST", "/v1/messages?durability=committed", map[string]any{"messages": items})
	require.Equal(t, 201, r.Status)
	b.promote(t) // already-due messages are inserted READY; promote any stragglers
	ctx := t.Context()

	var (
		mu   sync.Mutex // guards seen
		seen = map[uuid.UUID]int{}
		wg   sync.WaitGroup
	)
	for range 20 {
		wg.Go(func() {
			for {
				msgs, err := b.pollE(ctx, "work", "max=10")
				if err != nil {
					t.Error(err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				receipts := make([]string, len(msgs))
				mu.Lock()
				for i, m := range msgs {
					seen[m.ID]++
					receipts[i] = m.Receipt
				}
				mu.Unlock()
				r, err := b.send(ctx, keyConsume, "POST", "/v1/messages/ack", map[string]any{"receipts": receipts})
				if err != nil || r.Status != 200 || !strings.Contains(string(r.Body), fmt.Sprintf(`"count":%d`, len(msgs))) {
					t.Errorf("ack: %v %+v", err, r)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, n, "every message was delivered")
	for id, times := range seen {
		require.Equal(t, 1, times, "message %s delivered %d times", id, times)
	}
}

// TestLongPoll checks that a waiting poll answers as soon as the scheduler
// makes a message ready, not at its deadline nor at its next re-check.
func TestLongPoll(t *testing.T) {
	b := setupPG(t, api.Deps{})

	start := time.Now()
	require.Empty(t, b.poll(t, "idle", "wait=1"))
	require.GreaterOrEqual(t, time.Since(start), time.Second, "an empty long poll waits its time")

	id := b.create(t, `{"channel":"soon","payload":1,"delay":1}`)
	type result struct {
		msgs []api.PolledMessage
		at   time.Time
	}
	got := make(chan result, 1)
	go func() {
		msgs, err := b.pollE(t.Context(), "soon", "wait=15")
		if err != nil {
			t.Error(err)
		}
		got <- result{msgs, time.Now()}
	}()

	deadline := time.Now().Add(10 * time.Second)
	var promotedAt time.Time
	for promotedAt.IsZero() {
		if b.promote(t) == 1 {
			promotedAt = time.Now()
		}
		require.True(t, time.Now().Before(deadline), "the message never became due")
		runtimeYield()
	}
	select {
	case res := <-got:
		require.Len(t, res.msgs, 1)
		require.Equal(t, id, res.msgs[0].ID)
		require.Less(t, res.at.Sub(promotedAt), time.Second, "the long poll answered %s after the message became ready", res.at.Sub(promotedAt))
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not answer")
	}
}

// TestLongPollCanceled checks that a client that hangs up frees its poll.
func TestLongPollCanceled(t *testing.T) {
	b := setupPG(t, api.Deps{})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", b.URL+"/v1/channels/idle/poll?wait=20", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", keyConsume)
	start := time.Now()
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
}
