package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

const (
	produceKey = "produce-secret"
	consumeKey = "consume-secret"
)

// cliBundle is an SMQ API on a fresh PostgreSQL database, served over real
// HTTP, for the client commands to talk to.
type cliBundle struct {
	url     string
	st      *postgres.Store
	batches atomic.Int64 // POST /v1/messages requests seen
	// reject, while positive, makes that many batch creates answer 429.
	reject atomic.Int64
}

func setupCLI(t *testing.T) *cliBundle {
	t.Helper()
	st, err := postgres.Open(context.Background(), pgtest.URL(t), postgres.Options{Region: "r1", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	h := api.NewHandler(api.Deps{
		Store: st, Notifier: st, Region: "r1",
		Keys: []api.Key{
			{Name: "producer", Secret: produceKey, Scopes: []api.Scope{api.ScopeProduce}},
			{Name: "consumer", Secret: consumeKey, Scopes: []api.Scope{api.ScopeConsume}},
		},
	}, api.Config{})
	b := &cliBundle{st: st}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/messages" {
			b.batches.Add(1)
			if b.reject.Add(-1) >= 0 {
				w.Header().Set("Retry-After", "1")
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = w.Write([]byte(`{"status":429,"title":"Too Many Requests","detail":"buffer full"}`))
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// smq runs the smq command line with args and returns what it printed.
func (b *cliBundle) smq(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := rootCmd()
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// ok runs smq and fails the test if it fails.
func (b *cliBundle) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := b.smq(t, "", args...)
	require.NoError(t, err, "smq %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out, errOut)
	return out
}

// promote makes every due message ready, as the scheduler would.
func (b *cliBundle) promote(t *testing.T) {
	t.Helper()
	_, err := b.st.MessagePromote(t.Context(), &store.MessagePromoteParams{Region: "r1", Limit: 100_000})
	require.NoError(t, err)
}

type channelStats struct {
	Total     int64            `json:"total"`
	ByStatus  map[string]int64 `json:"by_status"`
	DueByHour []int64          `json:"due_by_hour"`
}

func (b *cliBundle) stats(t *testing.T, channel string) channelStats {
	t.Helper()
	out := b.ok(t, "stats", "--url", b.url, "--api-key", consumeKey, "--channel", channel, "--json")
	var st channelStats
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

type polled struct {
	ID       string          `json:"id"`
	Receipt  string          `json:"receipt"`
	Payload  json.RawMessage `json:"payload"`
	Attempts int             `json:"attempts"`
}

func decodeLines(t *testing.T, out string) []polled {
	t.Helper()
	var msgs []polled
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m polled
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		msgs = append(msgs, m)
	}
	return msgs
}

func TestSendPollAckStats(t *testing.T) {
	b := setupCLI(t)
	out := b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "jobs", "--payload", `{"n": 1}`)
	require.Regexp(t, `^created [0-9a-f-]{36} on jobs, due `, out)
	b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "jobs", "--payload", "plain text", "--durability", "committed")
	b.promote(t)

	out = b.ok(t, "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "jobs", "--max", "10", "--visibility", "1m", "--json")
	msgs := decodeLines(t, out)
	require.Len(t, msgs, 2)
	payloads := []string{string(msgs[0].Payload), string(msgs[1].Payload)}
	require.ElementsMatch(t, []string{`{"n":1}`, `"plain text"`}, payloads)

	out = b.ok(t, "ack", "--url", b.url, "--api-key", consumeKey, "--receipt", msgs[0].Receipt+","+msgs[1].Receipt)
	require.Equal(t, "acked 2 of 2\n", out)
	st := b.stats(t, "jobs")
	require.Zero(t, st.Total)

	out = b.ok(t, "stats", "--url", b.url, "--api-key", consumeKey, "--channel", "jobs")
	require.Contains(t, out, "total         0")
	require.Contains(t, out, "oldest ready  none waiting")
}

func TestPollPrintsATableAndAcksByID(t *testing.T) {
	b := setupCLI(t)
	b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "mail", "--payload", `{"to":"ada"}`)
	b.promote(t)

	out := b.ok(t, "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "mail")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	require.Regexp(t, `^ID\s+RECEIPT\s+ATTEMPT\s+SCHEDULED\s+LEASED UNTIL\s+PAYLOAD$`, lines[0])
	require.Contains(t, lines[1], `1/10`)
	require.Contains(t, lines[1], `{"to":"ada"}`)
	id := strings.Fields(lines[1])[0]

	require.Equal(t, "acked 1 of 1\n", b.ok(t, "ack", "--url", b.url, "--api-key", consumeKey, "--id", id))
	require.Equal(t, "no message ready on mail\n", b.ok(t, "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "mail"))
}

func TestPollAckFlagDeletesWhatItPrinted(t *testing.T) {
	b := setupCLI(t)
	b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "q", "--payload", "1")
	b.promote(t)
	out, errOut, err := b.smq(t, "", "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "q", "--ack", "--json")
	require.NoError(t, err)
	require.Len(t, decodeLines(t, out), 1)
	require.Empty(t, errOut)
	require.Zero(t, b.stats(t, "q").Total)
}

func TestSendSchedulesWithDelayAndAt(t *testing.T) {
	b := setupCLI(t)
	b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "later", "--payload", "1", "--delay", "90m")
	at := time.Now().Add(150 * time.Minute).UTC().Format(time.RFC3339)
	b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "later", "--payload", "2", "--at", at)
	unix := fmt.Sprint(time.Now().Add(150 * time.Minute).Unix())
	b.ok(t, "send", "--url", b.url, "--api-key", produceKey, "--channel", "later", "--payload", "3", "--at", unix)
	b.promote(t)

	st := b.stats(t, "later")
	require.Equal(t, int64(3), st.ByStatus["PENDING"])
	require.Len(t, st.DueByHour, 24)
	require.Equal(t, int64(1), st.DueByHour[1], "the 90 min delay falls in the second hour: %v", st.DueByHour)
	require.Equal(t, int64(2), st.DueByHour[2], "both --at messages fall in the third hour: %v", st.DueByHour)

	out := b.ok(t, "stats", "--url", b.url, "--api-key", consumeKey, "--channel", "later")
	require.Contains(t, out, "pending       3")
	require.Regexp(t, `\+1h\s+1 █+`, out)
	require.Regexp(t, `\+2h\s+2 █+`, out)

	out = b.ok(t, "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "later", "--json")
	require.Empty(t, out, "nothing is due yet")
}

func TestSendFileInBatchesWithProgress(t *testing.T) {
	b := setupCLI(t)
	var lines strings.Builder
	for i := range 2500 {
		switch {
		case i%500 == 0:
			fmt.Fprintf(&lines, `{"channel":"other","payload":{"i":%d},"delay":0}`+"\n", i)
		default:
			fmt.Fprintf(&lines, `{"payload":{"i":%d}}`+"\n", i)
		}
		if i == 1200 {
			lines.WriteString("\n") // blank lines are skipped
		}
	}
	path := filepath.Join(t.TempDir(), "messages.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(lines.String()), 0o644))

	out, errOut, err := b.smq(t, "", "send", "--url", b.url, "--api-key", produceKey, "--file", path, "--channel", "bulk", "--delay", "1h")
	require.NoError(t, err, errOut)
	require.Regexp(t, `^sent 2500 messages \(2500 created, 0 already there by dedup key\) in `, out)
	require.Contains(t, errOut, "2500/2500", "the progress bar ends at the total")
	require.Equal(t, int64(3), b.batches.Load(), "2500 messages go in batches of 1000")

	b.promote(t)
	require.Equal(t, int64(2495), b.stats(t, "bulk").ByStatus["PENDING"], "lines without a delay take --delay")
	require.Equal(t, int64(5), b.stats(t, "other").ByStatus["READY"], "a line's own delay wins")
}

func TestSendPayloadLinesFromStdinRetriesAFullBuffer(t *testing.T) {
	b := setupCLI(t)
	b.reject.Store(1)
	stdin := "{\"a\":1}\n\"two\"\n3\n"
	out, errOut, err := b.smq(t, stdin, "send", "--url", b.url, "--api-key", produceKey, "--file", "-",
		"--lines", "payload", "--channel", "raw", "--batch", "2", "--quiet")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "sent 3 messages (3 created")
	require.Empty(t, errOut, "--quiet hides the progress bar")
	require.Equal(t, int64(3), b.batches.Load(), "the 429 was retried after Retry-After, then two batches went through")

	b.promote(t)
	msgs := decodeLines(t, b.ok(t, "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "raw", "--json"))
	var payloads []string
	for _, m := range msgs {
		payloads = append(payloads, string(m.Payload))
	}
	require.ElementsMatch(t, []string{`{"a":1}`, `"two"`, `3`}, payloads)
}

func TestSendFileNamesTheBadLine(t *testing.T) {
	b := setupCLI(t)
	_, _, err := b.smq(t, "{\"channel\":\"c\",\"payload\":1}\n{\"channel\":\"c\",\"payload\":2}\n{\"chanel\":\"c\",\"payload\":3}\n",
		"send", "--url", b.url, "--api-key", produceKey, "--file", "-", "-q")
	require.ErrorContains(t, err, `line 3: not a message object`)
	require.ErrorContains(t, err, `unknown field "chanel"`)
	require.Zero(t, b.batches.Load(), "nothing is sent when a line of the first batch is bad")

	_, _, err = b.smq(t, `{"channel":"bad channel!","payload":1}`+"\n", "send", "--url", b.url, "--api-key", produceKey, "--file", "-", "-q")
	require.ErrorContains(t, err, "lines 1 to 1: 422 Unprocessable Entity")
	require.ErrorContains(t, err, "body.messages[0].channel")
}

func TestClientCommandsReportProblems(t *testing.T) {
	b := setupCLI(t)
	_, _, err := b.smq(t, "", "stats", "--url", b.url, "--api-key", "wrong", "--channel", "c")
	require.ErrorContains(t, err, "401 Unauthorized")

	_, _, err = b.smq(t, "", "poll", "--url", b.url, "--api-key", produceKey, "--channel", "c")
	require.ErrorContains(t, err, "403 Forbidden")

	_, _, err = b.smq(t, "", "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "c", "--max", "20000")
	require.ErrorContains(t, err, "422 Unprocessable Entity")
	require.ErrorContains(t, err, "query.max")

	_, _, err = b.smq(t, "", "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "c", "--wait", "1500ms")
	require.EqualError(t, err, "--wait 1.5s: give whole seconds")

	_, _, err = b.smq(t, "", "send", "--url", b.url, "--channel", "c", "--payload", "1", "--delay", "1m", "--at", "1767225600")
	require.EqualError(t, err, "give --delay or --at, not both")

	_, _, err = b.smq(t, "", "send", "--url", b.url, "--channel", "c", "--payload", "1", "--at", "tomorrow")
	require.ErrorContains(t, err, `--at "tomorrow" is neither Unix seconds nor an RFC 3339 time`)

	_, _, err = b.smq(t, "", "ack", "--url", b.url)
	require.ErrorContains(t, err, "at least one of the flags in the group [receipt id] is required")

	_, _, err = b.smq(t, "", "ack", "--url", b.url, "--api-key", consumeKey, "--receipt", "not-a-lease")
	require.Error(t, err)
}

func TestClientCommandsReadURLAndKeyFromEnvironment(t *testing.T) {
	b := setupCLI(t)
	t.Setenv("SMQ_URL", b.url)
	t.Setenv("SMQ_API_KEY", produceKey)
	out := b.ok(t, "send", "--channel", "env", "--payload", "1")
	require.Contains(t, out, "on env")

	t.Setenv("SMQ_API_KEY", consumeKey)
	out = b.ok(t, "stats", "--channel", "env", "--json")
	require.Contains(t, out, `"total":1`)
}

func TestPollLongPollWaitsForAMessage(t *testing.T) {
	b := setupCLI(t)
	start := time.Now()
	out := b.ok(t, "poll", "--url", b.url, "--api-key", consumeKey, "--channel", "idle", "--wait", "1s", "--json")
	require.Empty(t, out)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "--wait 1s waits a second for a message")
}
