package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smq/smq/test/harness"
)

// reply is one HTTP exchange with a node.
type reply struct {
	status int // 0 when the request failed (connection refused, reset…)
	header http.Header
	body   []byte
	took   time.Duration
	err    error
}

func (r reply) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// key names a reply's outcome in the counters: its status or "error".
func (r reply) key() string {
	if r.status == 0 {
		return "error"
	}
	return strconv.Itoa(r.status)
}

var httpClient = &http.Client{Timeout: 45 * time.Second}

// call sends a JSON request to the node's current address.
func call(ctx context.Context, node *harness.NodeProc, method, path string, body any) reply {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return reply{err: err}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, node.URL()+path, rd)
	if err != nil {
		return reply{err: err}
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return reply{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: raw, took: time.Since(start), err: err}
}

type created struct {
	MessageID   string    `json:"message_id"`
	ScheduledAt time.Time `json:"scheduled_at"`
}

type polled struct {
	ID         string    `json:"id"`
	Receipt    string    `json:"receipt"`
	AcquiredAt time.Time `json:"acquired_at"`
	Attempts   int       `json:"attempts"`
}

// create posts one message on channel due after delay and records it in
// the ledger when accepted.
func create(ctx context.Context, node *harness.NodeProc, ledger *harness.Ledger, channel string, delay time.Duration, n int) (reply, string, time.Time) {
	body := map[string]any{"channel": channel, "payload": map[string]any{"n": n}}
	if delay > 0 {
		body["delay"] = delay.String()
	}
	r := call(ctx, node, "POST", "/v1/message", body)
	if r.status != http.StatusCreated {
		return r, "", time.Time{}
	}
	var c created
	if err := json.Unmarshal(r.body, &c); err != nil {
		r.err = fmt.Errorf("create answer %s: %w", r.body, err)
		return r, "", time.Time{}
	}
	ledger.Accept(c.MessageID, c.ScheduledAt)
	return r, c.MessageID, c.ScheduledAt
}

// loadOptions shape a steady load.
type loadOptions struct {
	channel    string
	producers  int           // defaults to 4
	interval   time.Duration // between two creates of a producer; defaults to 25 ms
	maxDelay   time.Duration // a create's delay is random in [0, maxDelay]; defaults to 2 s
	consumers  int           // defaults to 2
	visibility int           // lease seconds; defaults to 10
}

// load is producers and consumers working on one node's channel, keeping
// the ledger and counting every answer.
type load struct {
	t      *testing.T
	node   *harness.NodeProc
	ledger *harness.Ledger
	o      loadOptions

	stopProducers, stopConsumers context.CancelFunc
	producers, consumers         sync.WaitGroup

	mu          sync.Mutex // guards the fields below
	creates     map[string]int
	polls       map[string]int
	acks        map[string]int
	accepted    map[string]time.Time // id → scheduled_at
	delivered   map[string]time.Time
	maxPoll503  time.Duration // slowest 503 answer to a poll
	noRetry     int           // 503s without Retry-After
	maxCreate   time.Duration // slowest answered create
	lastFailure string
}

func startLoad(t *testing.T, node *harness.NodeProc, ledger *harness.Ledger, o loadOptions) *load {
	t.Helper()
	if o.channel == "" {
		o.channel = "load"
	}
	if o.producers == 0 {
		o.producers = 4
	}
	if o.interval == 0 {
		o.interval = 25 * time.Millisecond
	}
	if o.maxDelay == 0 {
		o.maxDelay = 2 * time.Second
	}
	if o.consumers == 0 {
		o.consumers = 2
	}
	if o.visibility == 0 {
		o.visibility = 10
	}
	l := &load{t: t, node: node, ledger: ledger, o: o,
		creates: map[string]int{}, polls: map[string]int{}, acks: map[string]int{},
		accepted: map[string]time.Time{}, delivered: map[string]time.Time{}}
	pctx, pcancel := context.WithCancel(context.Background())
	cctx, ccancel := context.WithCancel(context.Background())
	l.stopProducers, l.stopConsumers = pcancel, ccancel
	for p := range o.producers {
		l.producers.Add(1)
		go l.produce(pctx, p)
	}
	for range o.consumers {
		l.consumers.Add(1)
		go l.consume(cctx)
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) produce(ctx context.Context, p int) {
	defer l.producers.Done()
	tick := time.NewTicker(l.o.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		delay := time.Duration(rand.Int64N(int64(l.o.maxDelay) + 1)).Truncate(time.Millisecond)
		if n%2 == 0 {
			delay = 0
		}
		r, id, at := create(ctx, l.node, l.ledger, l.o.channel, delay, p*1_000_000+n)
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.creates[r.key()]++
		if id != "" {
			l.accepted[id] = at
		}
		if r.status != 0 {
			l.maxCreate = max(l.maxCreate, r.took)
		}
		if r.status >= 500 {
			l.lastFailure = "create: " + r.String()
		}
		l.mu.Unlock()
	}
}

func (l *load) consume(ctx context.Context) {
	defer l.consumers.Done()
	path := fmt.Sprintf("/v1/channels/%s/poll?max=100&wait=1&visibility_timeout=%d", l.o.channel, l.o.visibility)
	for ctx.Err() == nil {
		r := call(ctx, l.node, "GET", path, nil)
		received := time.Now()
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.polls[r.key()]++
		if r.status == http.StatusServiceUnavailable {
			l.maxPoll503 = max(l.maxPoll503, r.took)
			if r.header.Get("Retry-After") == "" {
				l.noRetry++
			}
		}
		if r.status >= 500 {
			l.lastFailure = "poll: " + r.String()
		}
		l.mu.Unlock()
		if r.status != http.StatusOK {
			pause(ctx, 100*time.Millisecond)
			continue
		}
		var out struct {
			Messages []polled `json:"messages"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			l.t.Errorf("poll answer %s: %v", r.body, err)
			return
		}
		if len(out.Messages) > 0 {
			l.ack(ctx, out.Messages, received)
		}
	}
}

// ack acks msgs by receipt, retrying while the node or its database is
// away, and records in the ledger those whose ack succeeded.
func (l *load) ack(ctx context.Context, msgs []polled, received time.Time) {
	receipts := make([]string, len(msgs))
	for i, m := range msgs {
		receipts[i] = m.Receipt
	}
	ambiguous := false
	for ctx.Err() == nil {
		r := call(ctx, l.node, "POST", "/v1/messages/ack", map[string]any{"receipts": receipts})
		l.count(r)
		switch {
		case r.status == http.StatusOK:
			l.deliver(msgs, received)
			return
		case r.status == http.StatusConflict:
			// Some lease is no longer ours: ack one by one.
			for _, m := range msgs {
				l.ackOne(ctx, m, received, ambiguous)
			}
			return
		case r.status == 0 || r.status >= 500:
			ambiguous = true
			pause(ctx, 100*time.Millisecond)
		default:
			l.t.Errorf("ack: %s", r)
			return
		}
	}
}

func (l *load) ackOne(ctx context.Context, m polled, received time.Time, ambiguous bool) {
	for ctx.Err() == nil {
		r := call(ctx, l.node, "POST", "/v1/messages/ack", map[string]any{"receipts": []string{m.Receipt}})
		l.count(r)
		switch {
		case r.status == http.StatusOK:
			l.deliver([]polled{m}, received)
			return
		case r.status == http.StatusConflict:
			// Gone with our ack of unknown outcome, or leased again by
			// someone else after our lease expired.
			if ambiguous && call(ctx, l.node, "GET", "/v1/message/"+m.ID, nil).status == http.StatusNotFound {
				l.deliver([]polled{m}, received)
			}
			return
		case r.status == 0 || r.status >= 500:
			ambiguous = true
			pause(ctx, 100*time.Millisecond)
		default:
			l.t.Errorf("ack: %s", r)
			return
		}
	}
}

func (l *load) count(r reply) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acks[r.key()]++
	if r.status >= 500 && r.status != http.StatusServiceUnavailable {
		l.lastFailure = "ack: " + r.String()
	}
}

func (l *load) deliver(msgs []polled, received time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		if at, ok := l.accepted[m.ID]; ok && m.AcquiredAt.Before(at.Add(-time.Millisecond)) {
			l.t.Logf("early: %s scheduled %s, acquired %s (attempt %d), received %s",
				m.ID, at.Format(time.RFC3339Nano), m.AcquiredAt.Format(time.RFC3339Nano), m.Attempts, received.Format(time.RFC3339Nano))
		}
		l.ledger.Deliver(m.ID, harness.Delivery{ReceivedAt: received, AcquiredAt: m.AcquiredAt, Node: l.node.ID()})
		l.delivered[m.ID] = received
	}
}

// pause waits d or until ctx ends: pacing of a retry loop, not a wait for
// a condition.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// acceptedCount is how many creates of the load got a 201.
func (l *load) acceptedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// deliveredCount is how many distinct messages the load's consumers acked.
func (l *load) deliveredCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.delivered)
}

// waitAccepted waits until n more creates than now were accepted.
func (l *load) waitAccepted(n int, timeout time.Duration) {
	l.t.Helper()
	want := l.acceptedCount() + n
	harness.WaitFor(l.t, timeout, 20*time.Millisecond, fmt.Sprintf("%d accepted creates", want), func() (bool, error) {
		return l.acceptedCount() >= want, nil
	})
}

// waitDelivered waits until every id of ids was acked by a consumer, and
// returns when the last one was.
func (l *load) waitDelivered(ids []string, timeout time.Duration) time.Time {
	l.t.Helper()
	var last time.Time
	harness.WaitFor(l.t, timeout, 50*time.Millisecond, fmt.Sprintf("delivery of %d messages", len(ids)), func() (bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		last = time.Time{}
		missing := 0
		for _, id := range ids {
			at, ok := l.delivered[id]
			if !ok {
				missing++
			}
			if at.After(last) {
				last = at
			}
		}
		return missing == 0, fmt.Errorf("%d of %d not delivered", missing, len(ids))
	})
	return last
}

// drain stops the producers and waits until every accepted message was
// delivered, then stops the consumers.
func (l *load) drain(timeout time.Duration) {
	l.t.Helper()
	l.stopProducers()
	l.producers.Wait()
	l.mu.Lock()
	ids := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	l.waitDelivered(ids, timeout)
	l.stop()
}

func (l *load) stop() {
	l.stopProducers()
	l.stopConsumers()
	l.producers.Wait()
	l.consumers.Wait()
}

// report sums up the answers the load got.
func (l *load) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("creates %s (slowest answer %s); polls %s (slowest 503 %s, %d without Retry-After); acks %s; %d accepted, %d delivered",
		counts(l.creates), ms(l.maxCreate), counts(l.polls), ms(l.maxPoll503), l.noRetry, counts(l.acks), len(l.accepted), len(l.delivered))
}

// requireNoServerErrors fails t on any 5xx but those allowed.
func (l *load) requireNoServerErrors(allowed ...int) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range []map[string]int{l.creates, l.polls, l.acks} {
		for k, n := range m {
			status, _ := strconv.Atoi(k)
			if status < 500 {
				continue
			}
			ok := false
			for _, a := range allowed {
				ok = ok || a == status
			}
			if !ok {
				l.t.Errorf("%d answers %d (last failure: %s)", n, status, l.lastFailure)
			}
		}
	}
	if l.noRetry > 0 {
		l.t.Errorf("%d answers 503 without Retry-After", l.noRetry)
	}
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
