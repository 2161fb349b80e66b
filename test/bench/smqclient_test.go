package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// smqClient speaks SMQ's HTTP API as a client would, with the standard
// library and keep-alive connections (one per concurrent caller).
type smqClient struct {
	base string
	hc   *http.Client
}

// errBusy is a 429: the buffer is full. Callers back off and retry.
var errBusy = errors.New("429 buffer full")

func newSMQClient(base string) *smqClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     time.Minute,
	}
	return &smqClient{base: base, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (c *smqClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *smqClient) status(ctx context.Context, path string) (int, error) {
	code, _, err := c.do(ctx, http.MethodGet, path, nil)
	return code, err
}

func check(code int, body []byte, want ...int) error {
	for _, w := range want {
		if code == w {
			return nil
		}
	}
	if code == http.StatusTooManyRequests {
		return errBusy
	}
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Errorf("status %d: %s", code, body)
}

// appendMessage writes one message's JSON; a zero at means now.
func appendMessage(buf []byte, channel string, at time.Time) []byte {
	buf = append(buf, `{"channel":"`...)
	buf = append(buf, channel...)
	buf = append(buf, `","payload":{"n":1}`...)
	if !at.IsZero() {
		buf = append(buf, `,"scheduled_at":"`...)
		buf = at.UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, '"')
	}
	return append(buf, '}')
}

// doer sends one request and returns the status and body: smqClient
// (net/http's client) or rawConn (one connection, as wrk).
type doer interface {
	do(ctx context.Context, method, path string, body []byte) (int, []byte, error)
}

// create sends POST /v1/message.
func (c *smqClient) create(ctx context.Context, channel string, at time.Time) error {
	return createVia(ctx, c, channel, at)
}

// createVia sends POST /v1/message through d.
func createVia(ctx context.Context, d doer, channel string, at time.Time) error {
	code, body, err := d.do(ctx, http.MethodPost, "/v1/message", appendMessage(nil, channel, at))
	if err != nil {
		return err
	}
	return check(code, body, http.StatusCreated)
}

// createBatch sends POST /v1/messages with one message per time.
func (c *smqClient) createBatch(ctx context.Context, channel string, ats []time.Time) error {
	buf := make([]byte, 0, 64+len(ats)*96)
	buf = append(buf, `{"messages":[`...)
	for i, at := range ats {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendMessage(buf, channel, at)
	}
	buf = append(buf, "]}"...)
	code, body, err := c.do(ctx, http.MethodPost, "/v1/messages", buf)
	if err != nil {
		return err
	}
	return check(code, body, http.StatusCreated)
}

// polled is what the benchmark reads of a polled message.
type polled struct {
	ScheduledAt time.Time `json:"scheduled_at"`
	Receipt     string    `json:"receipt"`
}

// poll sends GET /v1/channels/{channel}/poll.
func (c *smqClient) poll(ctx context.Context, channel string, maxN, wait int) ([]polled, error) {
	return pollVia(ctx, c, channel, maxN, wait)
}

// pollVia sends GET /v1/channels/{channel}/poll through d.
func pollVia(ctx context.Context, d doer, channel string, maxN, wait int) ([]polled, error) {
	path := "/v1/channels/" + channel + "/poll?max=" + strconv.Itoa(maxN) + "&wait=" + strconv.Itoa(wait)
	code, body, err := d.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if err := check(code, body, http.StatusOK); err != nil {
		return nil, err
	}
	var out struct {
		Messages []polled `json:"messages"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("poll body: %w", err)
	}
	return out.Messages, nil
}

// ack sends POST /v1/messages/ack with receipts (at most 1000).
func (c *smqClient) ack(ctx context.Context, receipts []string) error {
	body, _ := json.Marshal(map[string][]string{"receipts": receipts})
	code, resp, err := c.do(ctx, http.MethodPost, "/v1/messages/ack", body)
	if err != nil {
		return err
	}
	return check(code, resp, http.StatusOK)
}

// retryBusy calls fn until it returns anything but errBusy, pausing between
// tries, and reports how many 429s it met.
func retryBusy(ctx context.Context, fn func() error) (busy int, err error) {
	for {
		err = fn()
		if !errors.Is(err, errBusy) {
			return busy, err
		}
		busy++
		select {
		case <-ctx.Done():
			return busy, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// metricValue reads /metrics and returns a sample by name (with labels, as
// printed), e.g. `smq_promoted_total`.
func (c *smqClient) metrics(ctx context.Context) (string, error) {
	code, body, err := c.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return "", err
	}
	if err := check(code, body, http.StatusOK); err != nil {
		return "", err
	}
	return string(body), nil
}

// cpuProfile fetches a CPU profile of the node over the given seconds.
func (n *smqNode) cpuProfile(ctx context.Context, seconds int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+n.pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pprof: status %d", resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}
