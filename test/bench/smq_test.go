package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// smqRegion is the region `smq dev` runs in by default: rows the benchmark
// copies straight into messages carry it, so the node serves them.
const smqRegion = "local"

// resetSMQ waits until the node's buffer is empty, then empties messages
// and channels (flush marks stay: they belong to the node's WAL).
func (n *smqNode) reset() {
	b := n.b
	n.waitBufferEmpty(2 * time.Minute)
	if _, err := b.smqDB.Exec(b.ctx, `TRUNCATE messages, channels`); err != nil {
		b.fail("reset smq tables: %v", err)
	}
	b.vacuum(b.smqDB, "messages")
}

// bufferDepth reads smq_buffer_depth from /metrics.
func (n *smqNode) bufferDepth() (int, error) {
	v, err := n.metric("smq_buffer_depth")
	return int(v), err
}

// metric reads one unlabelled sample from /metrics.
func (n *smqNode) metric(name string) (float64, error) {
	v, err := n.metrics(name)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// metrics reads unlabelled metrics from one scrape of /metrics, so that
// their values are of one instant.
func (n *smqNode) metrics(names ...string) ([]float64, error) {
	text, err := n.client.metrics(n.b.ctx)
	if err != nil {
		return nil, err
	}
	vals := make([]float64, len(names))
	found := make([]bool, len(names))
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for i, name := range names {
			if rest, ok := strings.CutPrefix(line, name+" "); ok && !found[i] {
				if vals[i], err = strconv.ParseFloat(strings.TrimSpace(rest), 64); err != nil {
					return nil, fmt.Errorf("metric %s: %w", name, err)
				}
				found[i] = true
			}
		}
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("metric %s not found", names[i])
		}
	}
	return vals, nil
}

// histogram reads a histogram's cumulative bucket counts from /metrics:
// upper bound (as printed) → count, in the order printed.
func (n *smqNode) histogram(name string) ([]string, []float64, error) {
	text, err := n.client.metrics(n.b.ctx)
	if err != nil {
		return nil, nil, err
	}
	var les []string
	var counts []float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le, val, _ := strings.Cut(rest, `"} `)
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		les = append(les, le)
		counts = append(counts, v)
	}
	if len(les) == 0 {
		return nil, nil, fmt.Errorf("histogram %s not found", name)
	}
	return les, counts, nil
}

// histPct returns the upper bound of the bucket holding the p-th
// percentile of the observations between two readings of a histogram.
func histPct(les []string, before, after []float64, p float64) string {
	if len(before) != len(after) || len(after) == 0 {
		return "–"
	}
	total := after[len(after)-1] - before[len(before)-1]
	if total <= 0 {
		return "–"
	}
	for i := range after {
		if after[i]-before[i] >= p/100*total {
			if les[i] == "+Inf" {
				return "> " + les[i-1] + " s"
			}
			return "≤ " + les[i] + " s"
		}
	}
	return "–"
}

func (n *smqNode) waitBufferEmpty(timeout time.Duration) {
	err := waitFor(n.b.ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		d, err := n.bufferDepth()
		return err == nil && d == 0, nil
	})
	if err != nil {
		n.b.fail("smq buffer not empty after %s", timeout)
	}
}

// copyMessages puts rows straight into SMQ's messages table with COPY, as
// the flush would have left them: for fillers and for messages already
// READY, where the workload is not about ingest.
func (b *bench) copyMessages(channel, status string, scheduled func(i int) time.Time, rows int) error {
	src := pgx.CopyFromFunc(func() func() ([]any, error) {
		i := 0
		payload := []byte(`{"n":1}`)
		return func() ([]any, error) {
			if i == rows {
				return nil, nil
			}
			row := []any{uuid.Must(uuid.NewV7()), channel, payload, status, scheduled(i), smqRegion}
			i++
			return row, nil
		}
	}())
	n, err := b.smqDB.CopyFrom(b.ctx, pgx.Identifier{"messages"},
		[]string{"id", "channel", "payload", "status", "scheduled_at", "region"}, src)
	if err == nil && int(n) != rows {
		err = fmt.Errorf("copied %d of %d rows", n, rows)
	}
	if err == nil {
		_, err = b.smqDB.Exec(b.ctx, `INSERT INTO channels (name) VALUES ($1) ON CONFLICT DO NOTHING`, channel)
	}
	return err
}

// profileDuring takes a CPU profile of the node for the given seconds in
// the background; the returned function waits for it and records it.
func (n *smqNode) profileDuring(name string, seconds int) (wait func()) {
	b := n.b
	done := make(chan struct{})
	go func() {
		defer close(done)
		statements := b.statementsDuring()
		data, err := n.cpuProfile(b.ctx, seconds)
		stmts := statements()
		if err != nil {
			b.res.note(fmt.Sprintf("CPU profile %q failed: %v", name, err))
			return
		}
		path := filepath.Join(b.profileDir(), strings.NewReplacer(" ", "-", "/", "-", "(", "", ")", "").Replace(name)+".pprof")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.res.note(fmt.Sprintf("CPU profile %q: %v", name, err))
			return
		}
		flat, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", path).CombinedOutput()
		if err != nil {
			b.res.note(fmt.Sprintf("pprof -top %q: %v: %s", name, err, flat))
			return
		}
		cum, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", path).CombinedOutput()
		if err != nil {
			b.res.note(fmt.Sprintf("pprof -top -cum %q: %v", name, err))
			return
		}
		areas, cumTop := profileBreakdown(string(cum))
		b.res.mu.Lock()
		b.res.profiles = append(b.res.profiles, profile{Name: name, Seconds: seconds, Path: path, Top: trimPprof(string(flat)), Cum: cumTop, Areas: areas, Statements: stmts})
		b.res.mu.Unlock()
	}()
	return func() { <-done }
}

// statementsDuring starts counting the statements of SMQ's database, by
// resetting pg_stat_statements (only SMQ runs while it is profiled), and
// returns a function that reads the busiest of them since.
func (b *bench) statementsDuring() func() []pgStatement {
	if !b.pgss {
		return func() []pgStatement { return nil }
	}
	if _, err := b.smqDB.Exec(b.ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		b.res.note(fmt.Sprintf("pg_stat_statements_reset: %v", err))
		return func() []pgStatement { return nil }
	}
	return func() []pgStatement {
		rows, err := b.smqDB.Query(b.ctx, `SELECT query, calls, rows, total_exec_time FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
				AND query NOT LIKE '%pg_stat_statements%'
			ORDER BY total_exec_time DESC LIMIT 8`)
		if err != nil {
			b.res.note(fmt.Sprintf("pg_stat_statements: %v", err))
			return nil
		}
		stmts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgStatement, error) {
			var s pgStatement
			err := r.Scan(&s.Query, &s.Calls, &s.Rows, &s.TotalMs)
			s.Query = strings.Join(strings.Fields(s.Query), " ")
			return s, err
		})
		if err != nil {
			b.res.note(fmt.Sprintf("pg_stat_statements: %v", err))
		}
		return stmts
	}
}

// profileAreas are the parts of smq whose cumulative share of a profile
// the results show; fn is a function's full name in pprof's output.
var profileAreas = []struct{ label, fn string }{
	{"HTTP requests, all of them (`net/http.(*conn).serve`)", "net/http.(*conn).serve"},
	{"… create handler (`api.(*server).createMessage`)", "github.com/smq/smq/api.(*server).createMessage"},
	{"… batch-create handler (`api.(*server).createMessages`)", "github.com/smq/smq/api.(*server).createMessages"},
	{"… poll handler (`api.(*server).poll`)", "github.com/smq/smq/api.(*server).poll"},
	{"… ack handler (`api.(*server).ack`)", "github.com/smq/smq/api.(*server).ack"},
	{"… Huma: validating the body against its schema (`huma.validateBody`)", "github.com/danielgtaylor/huma/v2.validateBody"},
	{"… Huma: decoding the body into the input struct (`huma.(*api).Unmarshal`)", "github.com/danielgtaylor/huma/v2.(*api).Unmarshal"},
	{"… Huma: encoding the response (`huma.writeResponse`)", "github.com/danielgtaylor/huma/v2.writeResponse"},
	{"… access-log lines (`api.logRequest`)", "github.com/smq/smq/api.logRequest"},
	{"… writing responses (`net/http.(*response).finishRequest`)", "net/http.(*response).finishRequest"},
	{"WAL append (`buffer.(*WAL).Append`)", "github.com/smq/smq/store/buffer.(*WAL).Append"},
	{"Badger's write loop (`badger.(*DB).writeRequests`)", "github.com/dgraph-io/badger/v4.(*DB).writeRequests"},
	{"flush to PostgreSQL (`buffer.(*Flusher).flush`)", "github.com/smq/smq/store/buffer.(*Flusher).flush"},
	{"scheduler loop (`activities.(*Activities).Schedule`)", "github.com/smq/smq/activities.(*Activities).Schedule"},
	{"janitor loop (`activities.(*Activities).Sweep`)", "github.com/smq/smq/activities.(*Activities).Sweep"},
	{"pgx encoding values through `driver.Valuer` (e.g. `uuid.UUID`)", "github.com/jackc/pgx/v5/pgtype.(*encodePlanDriverValuer).Encode"},
	{"… of which building pgx encode errors before falling back (`pgtype.newEncodeError`)", "github.com/jackc/pgx/v5/pgtype.newEncodeError"},
	{"garbage collector, background marking (`runtime.gcBgMarkWorker`)", "runtime.gcBgMarkWorker"},
}

// profileBreakdown reads `pprof -top -cum` output and returns each area's
// cumulative share, and the first lines of smq's own code and its
// libraries by cumulative time.
func profileBreakdown(out string) (areas []profileArea, cumTop string) {
	cum := map[string]string{}
	var keep []string
	temporal := 0.0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		fn := strings.Join(f[5:], " ")
		if _, ok := cum[fn]; !ok {
			cum[fn] = f[4]
		}
		if strings.HasPrefix(fn, "go.temporal.io/server/") {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
			temporal = max(temporal, v)
		}
		if len(keep) < 30 && (strings.Contains(fn, "smq/smq/") || strings.Contains(fn, "jackc/pgx") || strings.Contains(fn, "badger")) {
			if len(line) > 160 {
				line = line[:160] + "…"
			}
			keep = append(keep, line)
		}
	}
	for _, a := range profileAreas {
		share := cum[a.fn]
		if share == "" {
			share = "0%"
		}
		areas = append(areas, profileArea{Label: a.label, Share: share})
	}
	areas = append(areas, profileArea{Label: "embedded Temporal server (largest single `go.temporal.io/server` node, a lower bound)", Share: fmt.Sprintf("%.2f%%", temporal)})
	return areas, strings.Join(keep, "\n")
}

// trimPprof keeps pprof's summary lines and the table.
func trimPprof(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") ||
			strings.HasPrefix(line, "Time:") || strings.TrimSpace(line) == "" {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

func (b *bench) profileDir() string {
	dir := filepath.Join(b.outDir, "profiles")
	_ = os.MkdirAll(dir, 0o755)
	return dir
}

// smqCount counts a channel's rows in the database.
func (b *bench) smqCount(channel string) (int64, error) {
	return count(b.ctx, b.smqDB, `SELECT count(*) FROM messages WHERE channel = $1`, channel)
}

// waitInDB returns once channel holds want rows in SMQ's database, checking
// every interval until timeout. It counts the rows only once the node's
// buffer is empty (smq_buffer_depth, which falls when a flush has
// committed): a count(*) reads every row of the channel, and run every
// 10 ms it kept a core of PostgreSQL busy, taken from the very flush it
// was timing. If the count falls short, it goes on counting.
func (b *bench) waitInDB(ctx context.Context, n *smqNode, channel string, want int64, timeout, interval time.Duration) error {
	return waitFor(ctx, timeout, interval, func() (bool, error) {
		depth, err := n.bufferDepth()
		if err != nil || depth > 0 {
			return false, err
		}
		c, err := b.smqCount(channel)
		return c >= want, err
	})
}
