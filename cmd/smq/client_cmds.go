package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/smq/smq/api/client"
)

// The client commands talk to a node over HTTP through the generated client
// (api/client), so they work against any SMQ node, local or remote.

const (
	// sendBatch is the most messages per batch create (the API's limit).
	sendBatch = 1000
	// sendBatchBytes keeps a batch body well under the node's default 16 MiB
	// limit on batch creates.
	sendBatchBytes = 8 << 20
	// maxLine is the longest JSON line --file accepts.
	maxLine = 32 << 20
)

// remote holds the flags every client command shares.
type remote struct {
	url     string
	apiKey  string
	timeout time.Duration
	json    bool
}

func (r *remote) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&r.url, "url", cmp.Or(os.Getenv("SMQ_URL"), "http://localhost:8080"), "base URL of an SMQ node (env SMQ_URL)")
	fs.StringVar(&r.apiKey, "api-key", os.Getenv("SMQ_API_KEY"), "API key sent in the api-key header (env SMQ_API_KEY); empty sends none")
	fs.DurationVar(&r.timeout, "timeout", 30*time.Second, "how long one request may take (a long poll gets its wait on top)")
	fs.BoolVar(&r.json, "json", false, "print JSON (one object per line) instead of text for people")
}

func (r *remote) client() (*client.ClientWithResponses, error) {
	if r.url == "" {
		return nil, errors.New("--url is empty")
	}
	return client.New(strings.TrimRight(r.url, "/"), r.apiKey, client.WithHTTPClient(&http.Client{}))
}

// call runs one request under the command's timeout plus extra, turning a
// non-2xx answer into an error that names the problem.
func call[R any](ctx context.Context, r *remote, extra time.Duration, do func(context.Context) (R, *http.Response, []byte, error)) (R, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout+extra)
	defer cancel()
	res, resp, body, err := do(ctx)
	if err != nil {
		return res, fmt.Errorf("%s: %w", r.url, err)
	}
	return res, client.Check(resp, body)
}

func sendCmd() *cobra.Command {
	var (
		r                         remote
		channel, payload, at, dur string
		delay                     time.Duration
		file, lines, dedup        string
		maxAttempts, batch        int
		quiet                     bool
	)
	cmd := &cobra.Command{
		Use:   "send",
		Short: "Schedule a message, or every line of a JSON-lines file in batches",
		Long: `Schedule one message:

  smq send --channel billing --payload '{"invoice": 42}' --delay 10m
  smq send --channel billing --payload 'plain text' --at 2030-01-01T09:00:00Z

or every line of a file (- for standard input), up to 1000 messages a request,
with a progress bar on standard error:

  smq send --file messages.jsonl                # each line a message: {"channel": …, "payload": …, "delay": "30s"}
  smq send --file events.jsonl --lines payload --channel audit --delay 1h

A line's own channel, delay or scheduled_at wins over the flags. A payload that
is not valid JSON is sent as a JSON string. A 429 (buffer full) or 503 is
retried after the node's Retry-After, for up to two minutes.`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	r.addFlags(fs)
	fs.StringVar(&channel, "channel", "", "channel to deliver on (with --file: for lines that name none)")
	fs.StringVar(&payload, "payload", "", "the message body: a JSON value, or text sent as a JSON string")
	fs.DurationVar(&delay, "delay", 0, "deliver after this long, such as 30s, 10m or 72h")
	fs.StringVar(&at, "at", "", "deliver at this time: RFC 3339 (2030-01-01T09:00:00Z) or Unix seconds")
	fs.StringVar(&dedup, "dedup-key", "", "unique within the channel: sending the same key again creates nothing")
	fs.IntVar(&maxAttempts, "max-attempts", 0, "deliveries tried before the message moves to <channel>.DLQ (0: the node's default, 10)")
	fs.StringVar(&dur, "durability", "buffered", "buffered (answer once in the node's write-ahead log) or committed (once in the database)")
	fs.StringVarP(&file, "file", "f", "", "send every line of this JSON-lines file (- for standard input)")
	fs.StringVar(&lines, "lines", "message", "with --file, what a line is: message (an object with channel, payload, delay, …) or payload")
	fs.IntVar(&batch, "batch", sendBatch, "with --file, messages per request (1 to 1000)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if dur != "buffered" && dur != "committed" {
			return fmt.Errorf("--durability %q is neither buffered nor committed", dur)
		}
		if fs.Changed("delay") && at != "" {
			return errors.New("give --delay or --at, not both")
		}
		if delay < 0 {
			return fmt.Errorf("--delay %s is negative", delay)
		}
		tmpl := client.MessageIn{Channel: channel}
		if fs.Changed("delay") {
			tmpl.Delay = &client.MessageIn_Delay{}
			if err := tmpl.Delay.FromMessageInDelay1(delay.String()); err != nil {
				return err
			}
		}
		if at != "" {
			s, err := parseAt(at)
			if err != nil {
				return err
			}
			tmpl.ScheduledAt = s
		}
		if maxAttempts != 0 {
			n := int64(maxAttempts)
			tmpl.MaxAttempts = &n
		}
		c, err := r.client()
		if err != nil {
			return err
		}
		if file == "" {
			if fs.Changed("lines") || fs.Changed("batch") {
				return errors.New("--lines and --batch go with --file")
			}
			if channel == "" || !fs.Changed("payload") {
				return errors.New("give --channel and --payload (or --file)")
			}
			if dedup != "" {
				tmpl.DedupKey = &dedup
			}
			tmpl.Payload = jsonOrString(payload)
			return sendOne(cmd, &r, c, tmpl, client.CreateMessageParamsDurability(dur))
		}
		if fs.Changed("payload") || dedup != "" {
			return errors.New("--payload and --dedup-key go with a single message, not --file")
		}
		if lines != "message" && lines != "payload" {
			return fmt.Errorf("--lines %q is neither message nor payload", lines)
		}
		if batch < 1 || batch > sendBatch {
			return fmt.Errorf("--batch %d is outside 1 to %d", batch, sendBatch)
		}
		if lines == "payload" && channel == "" {
			return errors.New("--lines payload needs --channel")
		}
		s := &sender{
			r: &r, c: c, tmpl: tmpl, payloadLines: lines == "payload", batch: batch,
			durability: client.CreateMessagesParamsDurability(dur), quiet: quiet,
		}
		return s.sendFile(cmd, file)
	}
	return cmd
}

// parseAt reads --at: Unix seconds or an RFC 3339 time.
func parseAt(at string) (*client.MessageIn_ScheduledAt, error) {
	s := &client.MessageIn_ScheduledAt{}
	if n, err := strconv.ParseInt(at, 10, 64); err == nil {
		return s, s.FromMessageInScheduledAt0(n)
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return nil, fmt.Errorf("--at %q is neither Unix seconds nor an RFC 3339 time such as 2030-01-01T09:00:00Z", at)
	}
	return s, s.FromMessageInScheduledAt1(t.Format(time.RFC3339Nano))
}

// jsonOrString returns s as raw JSON when it is a JSON value, and as a JSON
// string otherwise, so `--payload hello` works without shell quoting.
func jsonOrString(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

func sendOne(cmd *cobra.Command, r *remote, c *client.ClientWithResponses, m client.MessageIn, dur client.CreateMessageParamsDurability) error {
	res, err := call(cmd.Context(), r, 0, func(ctx context.Context) (*client.CreateMessageResponse, *http.Response, []byte, error) {
		res, err := c.CreateMessageWithResponse(ctx, &client.CreateMessageParams{Durability: &dur}, m)
		if err != nil {
			return nil, nil, nil, err
		}
		return res, res.HTTPResponse, res.Body, nil
	})
	if err != nil {
		return err
	}
	created := cmp.Or(res.JSON201, res.JSON200)
	if created == nil {
		return fmt.Errorf("unexpected answer %s: %s", res.Status(), res.Body)
	}
	if r.json {
		return json.NewEncoder(cmd.OutOrStdout()).Encode(created)
	}
	verb := "created"
	if res.JSON201 == nil {
		verb = "exists (dedup key already used)"
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s on %s, due %s (in %s)\n", verb, created.MessageId, created.Channel,
		created.ScheduledAt.Local().Format(time.RFC3339), until(created.ScheduledAt))
	return err
}

// until says how far ahead t is, rounded for people.
func until(t time.Time) string {
	d := time.Until(t)
	if d <= 0 {
		return "0s"
	}
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// sender sends a JSON-lines file in batches.
type sender struct {
	r            *remote
	c            *client.ClientWithResponses
	tmpl         client.MessageIn
	payloadLines bool
	batch        int
	durability   client.CreateMessagesParamsDurability
	quiet        bool
}

func (s *sender) sendFile(cmd *cobra.Command, path string) error {
	var in io.Reader = cmd.InOrStdin()
	total := int64(-1)
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if total, err = countLines(f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		in = f
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetVisibility(!s.quiet),
		progressbar.OptionSetDescription("sending"),
		progressbar.OptionSetItsString("msg"),
		progressbar.OptionShowIts(),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)

	start := time.Now()
	var (
		msgs      []client.MessageIn
		size      int // bytes of msgs' lines
		firstLine int // line number of msgs[0]
		created   int
		existing  int
	)
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		c, e, err := s.sendBatch(cmd.Context(), msgs)
		if err != nil {
			_ = bar.Exit()
			return fmt.Errorf("lines %d to %d: %w (%d messages sent before them)",
				firstLine, firstLine+len(msgs)-1, err, created+existing)
		}
		created, existing = created+c, existing+e
		_ = bar.Add(len(msgs))
		msgs, size = msgs[:0], 0
		return nil
	}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := s.message(line)
		if err != nil {
			_ = bar.Exit()
			return fmt.Errorf("line %d: %w", n, err)
		}
		if len(msgs) > 0 && size+len(line) > sendBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(msgs) == 0 {
			firstLine = n
		}
		msgs, size = append(msgs, m), size+len(line)
		if len(msgs) == s.batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		_ = bar.Exit()
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := flush(); err != nil {
		return err
	}
	_ = bar.Finish()
	elapsed := time.Since(start)
	sent := created + existing
	if s.r.json {
		return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
			"sent": sent, "created": created, "existing": existing, "seconds": elapsed.Seconds(),
		})
	}
	rate := float64(sent) / max(elapsed.Seconds(), 1e-3)
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "sent %d messages (%d created, %d already there by dedup key) in %s, %.0f/s\n",
		sent, created, existing, elapsed.Round(time.Millisecond), rate)
	return err
}

// message makes one line into a message, filling what it lacks from the
// flags.
func (s *sender) message(line []byte) (client.MessageIn, error) {
	m := s.tmpl
	if s.payloadLines {
		if !json.Valid(line) {
			return m, errors.New("not a JSON value")
		}
		m.Payload = json.RawMessage(bytes.Clone(line))
		return m, nil
	}
	var in client.MessageIn
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return m, fmt.Errorf("not a message object (channel, payload, delay, scheduled_at, dedup_key, max_attempts): %w", err)
	}
	if in.Payload == nil && !bytes.Contains(line, []byte(`"payload"`)) {
		return m, errors.New("no payload")
	}
	in.Channel = cmp.Or(in.Channel, m.Channel)
	if in.Channel == "" {
		return m, errors.New("no channel, and no --channel")
	}
	if in.Delay == nil && in.ScheduledAt == nil {
		in.Delay, in.ScheduledAt = m.Delay, m.ScheduledAt
	}
	if in.MaxAttempts == nil {
		in.MaxAttempts = m.MaxAttempts
	}
	return in, nil
}

// sendBatch creates msgs in one request, retrying a full buffer (429) or an
// unavailable node (503) after its Retry-After, and returns how many were
// created and how many already existed by dedup key.
func (s *sender) sendBatch(ctx context.Context, msgs []client.MessageIn) (created, existing int, err error) {
	body := client.CreateMessagesInputBody{Messages: &msgs}
	op := func() (*client.BatchResults, error) {
		res, err := call(ctx, s.r, 0, func(ctx context.Context) (*client.CreateMessagesResponse, *http.Response, []byte, error) {
			res, err := s.c.CreateMessagesWithResponse(ctx, &client.CreateMessagesParams{Durability: &s.durability}, body)
			if err != nil {
				return nil, nil, nil, err
			}
			return res, res.HTTPResponse, res.Body, nil
		})
		var e *client.Error
		switch {
		case errors.As(err, &e) && (e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable):
			if secs, convErr := strconv.Atoi(res.HTTPResponse.Header.Get("Retry-After")); convErr == nil && secs > 0 {
				return nil, backoff.RetryAfter(secs)
			}
			return nil, err
		case err != nil:
			return nil, backoff.Permanent(err)
		}
		out := cmp.Or(res.JSON201, res.JSON200)
		if out == nil || out.Results == nil {
			return nil, backoff.Permanent(fmt.Errorf("unexpected answer %s: %s", res.Status(), res.Body))
		}
		return out, nil
	}
	out, err := backoff.Retry(ctx, op, backoff.WithMaxElapsedTime(2*time.Minute))
	if err != nil {
		return 0, 0, err
	}
	for _, r := range *out.Results {
		if r.Status == client.Existing {
			existing++
		} else {
			created++
		}
	}
	return created, existing, nil
}

// countLines counts the non-blank lines of r, for the progress bar's total.
func countLines(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var n int64
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	return n, sc.Err()
}

func pollCmd() *cobra.Command {
	var (
		r                     remote
		channel               string
		maxN                  int64
		wait, visibility      time.Duration
		subsidize, ack, quiet bool
	)
	cmd := &cobra.Command{
		Use:   "poll",
		Short: "Lease ready messages of a channel and print them with their receipts",
		Long: `Lease up to --max ready messages of a channel, earliest due first, and print
them. Each stays leased for --visibility: ack it with its receipt
(smq ack --receipt …) before then, or it becomes ready again. --ack acks
what was printed at once.

  smq poll --channel billing --max 10 --wait 20s`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	r.addFlags(fs)
	fs.StringVar(&channel, "channel", "", "channel to poll (required)")
	fs.Int64Var(&maxN, "max", 10, "most messages to lease (1 to 10000)")
	fs.DurationVar(&wait, "wait", 0, "long poll: wait up to this long (whole seconds, at most 20s) for a message when none is ready")
	fs.DurationVar(&visibility, "visibility", 30*time.Second, "lease length (whole seconds, 1s to 12h)")
	fs.BoolVar(&subsidize, "subsidize", false, "fill what this node's region lacks with other regions' messages")
	fs.BoolVar(&ack, "ack", false, "ack the printed messages at once")
	fs.BoolVarP(&quiet, "quiet", "q", false, "print nothing when no message is ready")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if channel == "" {
			return errors.New("--channel is required")
		}
		waitS, err := wholeSeconds("--wait", wait)
		if err != nil {
			return err
		}
		visS, err := wholeSeconds("--visibility", visibility)
		if err != nil {
			return err
		}
		c, err := r.client()
		if err != nil {
			return err
		}
		params := &client.PollMessagesParams{Max: &maxN, Wait: &waitS, VisibilityTimeout: &visS, Subsidize: &subsidize}
		res, err := call(cmd.Context(), &r, wait, func(ctx context.Context) (*client.PollMessagesResponse, *http.Response, []byte, error) {
			res, err := c.PollMessagesWithResponse(ctx, channel, params)
			if err != nil {
				return nil, nil, nil, err
			}
			return res, res.HTTPResponse, res.Body, nil
		})
		if err != nil {
			return err
		}
		var msgs []client.PolledMessage
		if res.JSON200 != nil && res.JSON200.Messages != nil {
			msgs = *res.JSON200.Messages
		}
		if err := printPolled(cmd.OutOrStdout(), &r, channel, msgs, quiet); err != nil {
			return err
		}
		if !ack || len(msgs) == 0 {
			return nil
		}
		receipts := make([]string, len(msgs))
		for i, m := range msgs {
			receipts[i] = m.Receipt
		}
		n, err := ackAll(cmd.Context(), &r, c, client.LeaseBody{Receipts: &receipts})
		if err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		if !r.json {
			fmt.Fprintf(cmd.ErrOrStderr(), "acked %d\n", n)
		}
		return nil
	}
	return cmd
}

// wholeSeconds turns a duration flag into the whole seconds the query
// string wants, refusing fractions rather than rounding them silently.
func wholeSeconds(flag string, d time.Duration) (int64, error) {
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%s %s: give whole seconds", flag, d)
	}
	return int64(d / time.Second), nil
}

func printPolled(w io.Writer, r *remote, channel string, msgs []client.PolledMessage, quiet bool) error {
	if r.json {
		enc := json.NewEncoder(w)
		for _, m := range msgs {
			if err := enc.Encode(m); err != nil {
				return err
			}
		}
		return nil
	}
	if len(msgs) == 0 {
		if !quiet {
			_, err := fmt.Fprintf(w, "no message ready on %s\n", channel)
			return err
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIPT\tATTEMPT\tSCHEDULED\tLEASED UNTIL\tPAYLOAD")
	for _, m := range msgs {
		payload, _ := json.Marshal(m.Payload)
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", m.Id, m.Receipt, m.Attempts, m.MaxAttempts,
			m.ScheduledAt.Local().Format(time.RFC3339), m.LeasedUntil.Local().Format(time.TimeOnly), shorten(string(payload), 80))
	}
	return tw.Flush()
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func ackCmd() *cobra.Command {
	var (
		r             remote
		receipts, ids []string
	)
	cmd := &cobra.Command{
		Use:   "ack",
		Short: "Acknowledge (delete) leased messages by receipt or by id",
		Long: `Acknowledge leased messages, deleting them. By receipt (from smq poll), an ack
succeeds only while the lease is still yours, all or nothing; by id, it acks
whatever lease is current.

  smq ack --receipt R1 --receipt R2
  smq ack --id 0192…,0193…`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	r.addFlags(fs)
	fs.StringSliceVar(&receipts, "receipt", nil, "receipts from a poll (repeat, or comma-separate)")
	fs.StringSliceVar(&ids, "id", nil, "message ids (repeat, or comma-separate)")
	cmd.MarkFlagsMutuallyExclusive("receipt", "id")
	cmd.MarkFlagsOneRequired("receipt", "id")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := r.client()
		if err != nil {
			return err
		}
		var body client.LeaseBody
		if len(receipts) > 0 {
			body.Receipts = &receipts
		} else {
			body.MessageIds = &ids
		}
		n, err := ackAll(cmd.Context(), &r, c, body)
		if err != nil {
			return err
		}
		if r.json {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"success": true, "count": n})
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "acked %d of %d\n", n, len(receipts)+len(ids))
		return err
	}
	return cmd
}

// ackAll acks in requests of at most 1000 and returns how many the node
// acked.
func ackAll(ctx context.Context, r *remote, c *client.ClientWithResponses, body client.LeaseBody) (int64, error) {
	all, set := body.Receipts, func(b *client.LeaseBody, s []string) { b.Receipts = &s }
	if all == nil {
		all, set = body.MessageIds, func(b *client.LeaseBody, s []string) { b.MessageIds = &s }
	}
	var n int64
	for chunk := range slices.Chunk(*all, sendBatch) {
		var b client.LeaseBody
		set(&b, chunk)
		res, err := call(ctx, r, 0, func(ctx context.Context) (*client.AckMessagesResponse, *http.Response, []byte, error) {
			res, err := c.AckMessagesWithResponse(ctx, b)
			if err != nil {
				return nil, nil, nil, err
			}
			return res, res.HTTPResponse, res.Body, nil
		})
		if err != nil {
			if n > 0 {
				return n, fmt.Errorf("%w (after %d acked)", err, n)
			}
			return n, err
		}
		if res.JSON200 != nil {
			n += res.JSON200.Count
		}
	}
	return n, nil
}

func statsCmd() *cobra.Command {
	var (
		r       remote
		channel string
	)
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show a channel's messages by status, the oldest due one, and what falls due in the next 24 hours",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	r.addFlags(fs)
	fs.StringVar(&channel, "channel", "", "channel (required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if channel == "" {
			return errors.New("--channel is required")
		}
		c, err := r.client()
		if err != nil {
			return err
		}
		res, err := call(cmd.Context(), &r, 0, func(ctx context.Context) (*client.ChannelStatsResponse, *http.Response, []byte, error) {
			res, err := c.ChannelStatsWithResponse(ctx, channel)
			if err != nil {
				return nil, nil, nil, err
			}
			return res, res.HTTPResponse, res.Body, nil
		})
		if err != nil {
			return err
		}
		st := res.JSON200
		if st == nil {
			return fmt.Errorf("unexpected answer %s: %s", res.Status(), res.Body)
		}
		if r.json {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(st)
		}
		return printStats(cmd.OutOrStdout(), st)
	}
	return cmd
}

func printStats(w io.Writer, st *client.ChannelStatsOutputBody) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "channel\t%s\n", st.Channel)
	fmt.Fprintf(tw, "total\t%d\n", st.Total)
	for _, s := range []string{"PENDING", "READY", "ACQUIRED"} {
		fmt.Fprintf(tw, "%s\t%d\n", strings.ToLower(s), st.ByStatus[s])
	}
	for _, s := range slices.Sorted(maps.Keys(st.ByStatus)) {
		if s != "PENDING" && s != "READY" && s != "ACQUIRED" {
			fmt.Fprintf(tw, "%s\t%d\n", strings.ToLower(s), st.ByStatus[s])
		}
	}
	if st.OldestDue != nil {
		fmt.Fprintf(tw, "oldest ready\tdue %s (%s ago)\n", st.OldestDue.Local().Format(time.RFC3339),
			time.Since(*st.OldestDue).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "oldest ready\tnone waiting\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.DueByHour == nil {
		return nil
	}
	hours := *st.DueByHour
	var peak int64
	for _, n := range hours {
		peak = max(peak, n)
	}
	if peak == 0 {
		_, err := fmt.Fprintln(w, "due in the next 24 hours: none")
		return err
	}
	fmt.Fprintln(w, "due in the next 24 hours:")
	width := len(strconv.FormatInt(peak, 10))
	for h, n := range hours {
		if n == 0 {
			continue
		}
		bar := strings.Repeat("█", int(max(1, n*40/peak)))
		if _, err := fmt.Fprintf(w, "  %4s %*d %s\n", fmt.Sprintf("+%dh", h), width, n, bar); err != nil {
			return err
		}
	}
	return nil
}
