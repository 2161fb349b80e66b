package bench

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// report renders the results as Markdown and SVG.
type report struct {
	res               *results
	machine           machine
	started, finished time.Time
	command           string
}

// createsVsRiver is issue 7's target for durable single creates: this
// many times River's Insert rate at the same concurrency.
const createsVsRiver = 4.0

// target is one goal of issues 3, 4 and 7 with its measured figure.
type target struct {
	Issue   string
	What    string
	Got     string
	Status  string // met, MISSED, or not measured
	Profile string // the profile that shows where the time goes
}

func status(measured, met bool) string {
	switch {
	case !measured:
		return "not measured"
	case met:
		return "met"
	default:
		return "**MISSED**"
	}
}

func (r *report) targets() []target {
	res := r.res
	var ts []target
	add := func(issue, what, got string, measured, met bool, prof string) {
		ts = append(ts, target{Issue: issue, What: what, Got: got, Status: status(measured, met), Profile: prof})
	}

	smqLat, okLat := res.lateness[sysSMQWAL]
	{
		s := smqLat.Spread.Late
		add("7, 4", "lateness p99 ≤ 25 ms (10,000 due over 10 s, received by a long-polling consumer)",
			"p99 "+msOr(s.P99, s.P99ok, smqLat.Bound)+" ms", okLat, s.P99ok && s.P99 <= 25*time.Millisecond, "w4 SMQ burst of 100,000")
		add("7, 4", "lateness max ≤ 100 ms (same run)",
			"max "+msOr(s.Max, s.Maxok, smqLat.Bound)+" ms", okLat, s.Maxok && s.Max <= 100*time.Millisecond, "w4 SMQ burst of 100,000")
	}
	for _, peer := range []string{sysRiverDef, sysRiverTuned} {
		p, ok := res.lateness[peer]
		sl, pl := smqLat.Spread.Late, p.Spread.Late
		met := okLat && ok && sl.P99ok && (!pl.P99ok || sl.P99 < pl.P99)
		add("4", "lateness p99 better than "+peer,
			fmt.Sprintf("SMQ %s ms vs %s ms", msOr(sl.P99, sl.P99ok, smqLat.Bound), msOr(pl.P99, pl.P99ok, p.Bound)),
			okLat && ok, met, "")
	}
	if res.idle != nil {
		add("7, 4", "no idle polling load: an idle node sends at most a few (≤ 5) queries a second",
			fmt.Sprintf("%.1f transactions/s", res.idle.PerSec), true, res.idle.PerSec <= 5, "")
	} else {
		add("7, 4", "no idle polling load (≤ 5 queries/s)", "–", false, false, "")
	}
	{
		s, ok := res.drain[sysSMQWAL]
		p, okp := res.drain[sysRiverTuned]
		add("7", "drain over HTTP ≥ 2× River tuned", fmt.Sprintf("%s msgs/s vs %s = %s", rate(s.Rate), rate(p.Rate), ratio(s.Rate, p.Rate)),
			ok && okp, s.Rate >= 2*p.Rate, "w5 SMQ drain")
		add("7", "drain over HTTP ≥ 35,000 msgs/s", rate(s.Rate)+" msgs/s", ok, s.Rate >= 35000, "w5 SMQ drain")
	}
	add("7", "burst of 100,000 due in one second: all pollable within 2 s of its first due time",
		msOr(smqLat.Burst.Ready, smqLat.Burst.ReadyOK, smqLat.Bound)+" ms", okLat, smqLat.Burst.ReadyOK && smqLat.Burst.Ready <= 2*time.Second, "w4 SMQ burst of 100,000")
	for _, c := range []int{16, 64} {
		s, ok := res.throughput[sysSMQWAL][c]
		p, okp := res.throughput[sysRiver][c]
		add("7", fmt.Sprintf("durable single create ≥ %g× River Insert at concurrency %d", createsVsRiver, c),
			fmt.Sprintf("%s/s vs %s/s = %s", rate(s.Rate), rate(p.Rate), ratio(s.Rate, p.Rate)), ok && okp, s.Rate >= createsVsRiver*p.Rate,
			w2Profile(sysSMQWAL, c))
	}
	{
		s, ok := res.bulk[sysSMQWAL+" batch 1000"]
		p, okp := res.bulk["River InsertManyFast"]
		add("7", "batch create (in the database) ≥ 1.5× River InsertManyFast",
			fmt.Sprintf("%s rows/s vs %s = %s", rate(s.Rate), rate(p.Rate), ratio(s.Rate, p.Rate)), ok && okp, s.Rate >= 1.5*p.Rate,
			"w3 SMQ (WAL) batch 1000")
	}
	{
		small, ok1 := res.scale[w6Small]
		large, ok2 := res.scale[w6Large]
		ok := ok1 && ok2 && small.Lateness.P99ok && large.Lateness.P99ok
		add("7", "scale: lateness p99 with 1,000,000 stored within 1.5× of 10,000",
			fmt.Sprintf("%s ms vs %s ms = %s", ms(large.Lateness.P99), ms(small.Lateness.P99), ratioPlain(large.Lateness.P99, small.Lateness.P99)),
			ok, float64(large.Lateness.P99) <= 1.5*float64(small.Lateness.P99), "")
		add("7", "scale: poll p50 with 1,000,000 stored within 1.5× of 10,000",
			fmt.Sprintf("%s ms vs %s ms = %s", ms(large.Poll.P50), ms(small.Poll.P50), ratioPlain(large.Poll.P50, small.Poll.P50)),
			ok1 && ok2, float64(large.Poll.P50) <= 1.5*float64(small.Poll.P50), "")
		add("7", "scale: burst of 20,000 pollable with 1,000,000 stored within 1.5× of 10,000",
			fmt.Sprintf("%s ms vs %s ms = %s", ms(large.Promote), ms(small.Promote), ratioPlain(large.Promote, small.Promote)),
			ok1 && ok2 && large.Promote > 0 && small.Promote > 0, float64(large.Promote) <= 1.5*float64(small.Promote), "")
	}
	for _, l := range []struct {
		op   string
		want time.Duration
	}{{loopbackOps[0], 500 * time.Microsecond}, {loopbackOps[1], time.Millisecond}, {loopbackOps[2], 300 * time.Microsecond}, {loopbackOps[3], 300 * time.Microsecond}} {
		s, ok := res.loopback[l.op]
		measured := ms(s.P50) + " ms"
		if std, ok := res.loopbackStd[l.op]; ok {
			measured += fmt.Sprintf(" (net/http client: %s ms)", ms(std.P50))
		}
		add("7", fmt.Sprintf("loopback p50, one client: %s ≤ %s ms", l.op, ms(l.want)), measured, ok, s.P50 <= l.want, "")
	}
	{
		s, ok := res.throughput[sysSMQWAL][64]
		add("3", "≥ 15,000 single creates/s in WAL mode at concurrency 64", rate(s.Rate)+"/s", ok, s.Rate >= 15000, w2Profile(sysSMQWAL, 64))
		add("3", "… with p99 under 20 ms", ms(s.Latency.P99)+" ms", ok, s.Latency.P99 < 20*time.Millisecond, w2Profile(sysSMQWAL, 64))
	}
	for _, mode := range []string{sysSMQWAL, sysSMQMemory} {
		s, ok := res.bulk[mode+" batch 1000"]
		add("3", "≥ 100,000 msgs/s through batch creates, until in the database: "+mode, rate(s.Rate)+" rows/s", ok, s.Rate >= 100000, "w3 "+mode+" batch 1000")
	}
	return ts
}

// cores renders a CPU split as three cells: smq, PostgreSQL, and the bench
// process (the load generator, and River when River runs).
func cores(c cpuSplit) []string {
	if c.Wall <= 0 {
		return []string{"–", "–", "–"}
	}
	f := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()/c.Wall.Seconds()) }
	return []string{f(c.SMQ), f(c.Postgres), f(c.Bench), f(c.Other)}
}

var coreHeaders = []string{"cores: smq", "cores: PostgreSQL", "cores: bench", "cores: other"}

const coresNote = "CPU is shown in cores (CPU seconds per second of the run, from `/proc`): the smq process (idle while a peer runs), every PostgreSQL process, the bench process (the load generator, and River itself for River's rows), and everything else on the machine (`/proc/stat` minus those). The machine has %d."

func ratioPlain(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("×%.2f", float64(a)/float64(b))
}

// write writes results.md and results.svg.
func (r *report) write(mdPath, svgPath string) error {
	if err := os.WriteFile(svgPath, []byte(r.svg()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(mdPath, []byte(r.markdown()), 0o644)
}

type md struct{ strings.Builder }

func (m *md) p(format string, args ...any) { fmt.Fprintf(&m.Builder, format+"\n", args...) }

func (m *md) table(header []string, rows [][]string) {
	m.p("| %s |", strings.Join(header, " | "))
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	m.p("| %s |", strings.Join(seps, " | "))
	for _, row := range rows {
		m.p("| %s |", strings.Join(row, " | "))
	}
	m.p("")
}

func (r *report) markdown() string {
	res := r.res
	res.mu.Lock()
	defer res.mu.Unlock()
	var m md
	mc := r.machine
	m.p("# SMQ benchmark results")
	m.p("")
	m.p("SMQ, River and a hand-written `FOR UPDATE SKIP LOCKED` queue, in one run, on one PostgreSQL started by the harness with durable settings (fsync, synchronous commit and full-page writes on). Each system has its own database on that server; the load generator runs on the same machine. Every figure below was measured in this run: nothing is carried over or typed in. Percentiles are nearest-rank over every sample.")
	m.p("")
	m.p("- **Date:** %s (run took %s)", r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	m.p("- **Command:** `%s`", r.command)
	m.p("- **Machine:** %d CPUs (`nproc`), %s, %s memory, %s", mc.CPUs, mc.Model, mc.MemTotal, mc.Kernel)
	m.p("- **Software:** %s, %s, River %s, SMQ built from this tree (`go build` of `./cmd/smq`, run as `smq dev` with `SMQ_DATABASE_URL` set)", mc.Go, mc.Postgres, riverVersion())
	m.p("- **Ratios** say how SMQ compares with the peer: above ×1 SMQ is better (for a rate, SMQ ÷ peer; for a latency, peer ÷ SMQ).")
	m.p("")
	m.p("![lateness and throughput](results.svg)")
	m.p("")
	r.conditions(&m)

	m.p("## Targets of issues 3, 4 and 7")
	m.p("")
	var rows [][]string
	var missed []target
	for _, t := range r.targets() {
		rows = append(rows, []string{t.Issue, t.What, t.Got, t.Status})
		if t.Status == "**MISSED**" {
			missed = append(missed, t)
		}
	}
	m.table([]string{"issue", "target", "measured", "status"}, rows)
	if len(missed) > 0 {
		m.p("%d target(s) missed. Where a CPU profile of the smq process was taken during the workload, its top entries, and PostgreSQL's busiest statements over the same seconds, are under [Profiles](#profiles).", len(missed))
		m.p("")
	}

	r.w1(&m)
	r.w2(&m)
	r.w3(&m)
	r.w4(&m)
	r.w5(&m)
	r.w6(&m)
	r.w7(&m)
	r.loopbackIdle(&m)

	m.p("## Profiles")
	m.p("")
	m.p("CPU profiles of the smq process, taken while a workload ran through `net/http/pprof`, which the harness adds to the binary with a build overlay (`test/bench/testdata/pprof.go.txt`; the source tree has no pprof endpoint). The profile runs alongside the measurement it explains (sampling at 100 Hz costs a few per cent). The `.pprof` files are in `test/bench/profiles/` after a run: `go tool pprof -http=: <smq binary> <file>`.")
	m.p("")
	missedProfiles := map[string]bool{}
	for _, t := range missed {
		if t.Profile != "" {
			missedProfiles[t.Profile] = true
		}
	}
	profs := slices.Clone(res.profiles)
	slices.SortStableFunc(profs, func(a, b profile) int {
		return cmp.Compare(boolInt(!missedProfiles[a.Name]), boolInt(!missedProfiles[b.Name]))
	})
	for _, p := range profs {
		tag := ""
		if missedProfiles[p.Name] {
			tag = " — explains a missed target"
		}
		m.p("### %s (%d s)%s", p.Name, p.Seconds, tag)
		m.p("")
		var rows [][]string
		for _, a := range p.Areas {
			rows = append(rows, []string{a.Label, a.Share})
		}
		m.table([]string{"where (cumulative, the callees included)", "share of smq's CPU samples"}, rows)
		if len(p.Statements) > 0 {
			m.p("PostgreSQL over the same %d s, SMQ's database, busiest statements first (`pg_stat_statements`; the time is wall time in the server, so waiting for a core or a lock counts):", p.Seconds)
			m.p("")
			var srows [][]string
			for _, st := range p.Statements {
				perRow := ""
				if st.Rows > 0 {
					perRow = fmt.Sprintf("%.1f", st.TotalMs*1000/float64(st.Rows))
				}
				srows = append(srows, []string{"`" + shorten(st.Query, 110) + "`", fmt.Sprint(st.Calls), fmt.Sprint(st.Rows), fmt.Sprintf("%.0f", st.TotalMs), perRow})
			}
			m.table([]string{"statement", "calls", "rows", "total ms", "µs per row"}, srows)
		}
		m.p("Top by own time:")
		m.p("")
		m.p("```")
		m.p("%s", p.Top)
		m.p("```")
		m.p("")
		m.p("Top by cumulative time, in smq, pgx and Badger:")
		m.p("")
		m.p("```")
		m.p("%s", p.Cum)
		m.p("```")
		m.p("")
	}
	if len(profs) == 0 {
		m.p("No profile was taken.")
		m.p("")
	}
	if len(res.notes) > 0 {
		m.p("## Notes from the run")
		m.p("")
		for _, n := range res.notes {
			m.p("- %s", n)
		}
		m.p("")
	}
	return m.String()
}

// shorten cuts s to at most n runes, with an ellipsis, and keeps it
// inside a Markdown table cell.
func shorten(s string, n int) string {
	s = strings.NewReplacer("|", "\\|", "`", "'").Replace(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (r *report) w1(m *md) {
	res := r.res
	m.p("## 1. Create latency, one client")
	m.p("")
	m.p("%d sequential creates after %d of warm-up, each due in an hour. SMQ: `POST /v1/message` (201 once in the WAL, or in memory), sent with the raw client of workload 2; the row *%s* is the same server driven by net/http's client. River: `Insert`; plain: one `INSERT`.", w1Creates, w1Warm, sysSMQWALStd)
	m.p("")
	var rows [][]string
	for _, sys := range []string{sysSMQWAL, sysSMQWALStd, sysSMQMemory, sysRiver, sysInsert} {
		s, ok := res.createLatency[sys]
		if !ok {
			continue
		}
		row := []string{sys, ms(s.P50), ms(s.P99), ms(s.Max)}
		if strings.HasPrefix(sys, "SMQ") {
			row = append(row, ratio(float64(res.createLatency[sysRiver].P50), float64(s.P50)), ratio(float64(res.createLatency[sysInsert].P50), float64(s.P50)))
		} else {
			row = append(row, "", "")
		}
		rows = append(rows, row)
	}
	m.table([]string{"system", "p50 ms", "p99 ms", "max ms", "p50 vs River", "p50 vs plain INSERT"}, rows)
}

func (r *report) w2(m *md) {
	res := r.res
	m.p("## 2. Create throughput")
	m.p("")
	m.p("Callers create back to back for %s each, one message per call. SMQ: single `POST /v1/message` over HTTP (WAL: durable, fsynced before the 201; memory: not durable); River: `Insert`; plain: one `INSERT` each. 429s were retried after 20 ms and are not counted as creates.", w2Duration)
	m.p("")
	m.p("SMQ's callers use a minimal HTTP/1.1 client (`test/bench/rawclient_test.go`): one keep-alive connection each, the request written and the response read on the caller's goroutine, as `wrk` does. The load generator shares the two cores with SMQ and PostgreSQL, and net/http's client spends two goroutine hand-offs per request of its own; River and the plain INSERT have no client to pay for. The row *%s* is the same server at 64 callers driven by net/http's client instead. *Creates per fsync* is how many creates shared each of the WAL's group writes (`smq_wal_syncs_total`), and *ms per fsync* how long one took on average, Badger's commit and the `fdatasync` (`smq_wal_sync_seconds_total` over `smq_wal_syncs_total`): a create waits for the group write in progress when it arrives, then for its own.", sysSMQWALStd)
	m.p("")
	var rows [][]string
	for _, sys := range []string{sysSMQWAL, sysSMQWALStd, sysSMQMemory, sysRiver, sysInsert} {
		for _, c := range w2Concurrency {
			t, ok := res.throughput[sys][c]
			if !ok {
				continue
			}
			row := []string{sys, fmt.Sprint(c), rate(t.Rate), ms(t.Latency.P50), ms(t.Latency.P99), fmt.Sprint(t.Errors)}
			if strings.HasPrefix(sys, "SMQ") {
				row = append(row, ratio(t.Rate, res.throughput[sysRiver][c].Rate), ratio(t.Rate, res.throughput[sysInsert][c].Rate))
			} else {
				row = append(row, "", "")
			}
			perSync, syncMean := "", ""
			if t.PerSync > 0 {
				perSync, syncMean = fmt.Sprintf("%.1f", t.PerSync), ms(t.SyncMean)
			}
			rows = append(rows, append(append(row, perSync, syncMean, micros(cpuPerOp(t.CPU, t.Rate))), cores(t.CPU)...))
		}
	}
	m.table(append([]string{"system", "callers", "creates/s", "p50 ms", "p99 ms", "429s", "vs River Insert", "vs plain INSERT", "creates per fsync", "ms per fsync", "CPU µs per create"}, coreHeaders...), rows)
	m.p(coresNote, r.machine.CPUs)
	m.p("")
	m.p("*CPU µs per create* is the CPU that smq, PostgreSQL and the bench process spent together per create: their cores over the rate. The load generator, the queue and the database share the machine's cores, so at that cost no wait made shorter could lift the rate above cores ÷ CPU per create (part of the cost is fixed per second and would shrink a little per create at a higher rate):")
	m.p("")
	for _, c := range w2Concurrency {
		s, river := res.throughput[sysSMQWAL][c], res.throughput[sysRiver][c]
		per, riverPer := cpuPerOp(s.CPU, s.Rate), cpuPerOp(river.CPU, river.Rate)
		if c == 1 || per <= 0 || riverPer <= 0 || r.machine.CPUs <= 0 {
			continue
		}
		ceiling := float64(r.machine.CPUs) / per.Seconds()
		line := fmt.Sprintf("- **%d callers:** a durable create took %s µs (River's `Insert` %s µs). At that cost %d cores make at most %s creates/s with every core busy, ×%.2f River's rate in this run, against the ×%g of the target.",
			c, micros(per), micros(riverPer), r.machine.CPUs, rate(ceiling), ceiling/river.Rate, createsVsRiver)
		if s.PerSync > 0 && s.SyncMean > 0 {
			// The writer is one goroutine: its group writes, one after
			// the other, took this share of the run.
			busy := s.Rate / s.PerSync * s.SyncMean.Seconds()
			line += fmt.Sprintf(" The WAL's writer, which makes the group writes one at a time, was in one %.0f%% of the run.", 100*busy)
		}
		m.p("%s", line)
	}
	m.p("")
}

// cpuPerOp is the CPU that smq, PostgreSQL and the bench process spent
// together per op at rate ops a second, over the run c measured.
func cpuPerOp(c cpuSplit, rate float64) time.Duration {
	if c.Wall <= 0 || rate <= 0 {
		return 0
	}
	cores := (c.SMQ + c.Postgres + c.Bench).Seconds() / c.Wall.Seconds()
	return time.Duration(cores / rate * float64(time.Second))
}

// micros writes d in whole µs, or nothing for 0.
func micros(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", d.Seconds()*1e6)
}

func (r *report) w3(m *md) {
	res := r.res
	m.p("## 3. Bulk create")
	m.p("")
	m.p("%d messages in batches from %d callers. The clock stops when the rows are in the database: for SMQ, whose flush is asynchronous, when `count(*)` of the channel reaches %d. After the last batch is acknowledged, the harness reads the node's `smq_buffer_depth` every 10 ms and counts once it is 0 (the depth falls when a flush has committed; counting every 10 ms instead read the whole table each time and kept a core of PostgreSQL from the flush).", w3Rows, w3Callers, w3Rows)
	m.p("")
	var rows [][]string
	peers := []string{"River InsertMany", "River InsertManyFast", "pgx CopyFrom"}
	names := []string{sysSMQWAL + " batch 100", sysSMQWAL + " batch 1000", sysSMQMemory + " batch 100", sysSMQMemory + " batch 1000"}
	for _, name := range append(names, peers...) {
		b, ok := res.bulk[name]
		if !ok {
			continue
		}
		row := []string{name, fmt.Sprint(b.Batch), b.Elapsed.Round(time.Millisecond).String(), rate(b.Rate), b.Ack.Round(time.Millisecond).String(), fmt.Sprint(b.Errors)}
		for _, p := range peers {
			if strings.HasPrefix(name, "SMQ") {
				row = append(row, ratio(b.Rate, res.bulk[p].Rate))
			} else {
				row = append(row, "")
			}
		}
		rows = append(rows, append(row, cores(b.CPU)...))
	}
	m.table(append([]string{"system", "batch", "in the database after", "rows/s", "acknowledged after", "429s", "vs InsertMany", "vs InsertManyFast", "vs CopyFrom"}, coreHeaders...), rows)
	m.p(coresNote, r.machine.CPUs)
	m.p("")
}

var latencySystems = []string{sysSMQWAL, sysRiverDef, sysRiverTuned, sysPGQ}

func (r *report) w4(m *md) {
	res := r.res
	m.p("## 4. Delivery lateness")
	m.p("")
	m.p("Two runs per system: %d messages due evenly over %s (created %s ahead), then a burst of %d due within one second (created %s ahead). Each system's table is analyzed once loaded. Lateness = the time a consumer got the message − its scheduled time. A message not received within %s of a run's last due time counts as later than that (\"> …\"). \"All pollable\" (SMQ only) is when the channel has no PENDING row left among those due (a query every 5 ms for the earliest such row, reading the index on from the one the last query found).", w4Spread, w4SpreadOver, w4SpreadLead, w4Burst, w4BurstLead, w4Bound)
	m.p("")
	smq := res.lateness[sysSMQWAL]
	for _, phase := range []struct {
		title string
		pick  func(latenessResult) latenessRun
	}{
		{fmt.Sprintf("%d due over %s", w4Spread, w4SpreadOver), func(l latenessResult) latenessRun { return l.Spread }},
		{fmt.Sprintf("Burst of %d due within one second", w4Burst), func(l latenessResult) latenessRun { return l.Burst }},
	} {
		m.p("**%s**", phase.title)
		m.p("")
		sl := phase.pick(smq).Late
		var rows [][]string
		for _, sys := range latencySystems {
			l, ok := res.lateness[sys]
			if !ok {
				continue
			}
			run := phase.pick(l)
			s := run.Late
			adv := ""
			if sys != sysSMQWAL {
				adv = latRatio(s.P99, s.P99ok, sl.P99, sl.P99ok)
			}
			ready := "–"
			if run.ReadyOK || sys == sysSMQWAL {
				ready = msOr(run.Ready, run.ReadyOK, l.Bound)
			}
			rows = append(rows, append([]string{sys, msOr(s.P50, s.P50ok, l.Bound), msOr(s.P99, s.P99ok, l.Bound), msOr(s.Max, s.Maxok, l.Bound),
				fmt.Sprint(s.Missing), ready, msOr(run.AllReceived, run.AllReceivedOK, l.Bound), adv}, cores(run.CPU)...))
		}
		m.table(append([]string{"system", "p50 ms", "p99 ms", "max ms", "not received", "all pollable after (ms from first due)", "all received after (ms from first due)", "SMQ's p99 advantage"}, coreHeaders...), rows)
		if run := phase.pick(smq); run.ReadyP50 != "" {
			m.p("SMQ's scheduler histogram (`smq_scheduler_lateness_seconds`, due → READY, read before and after the run): p50 %s, p99 %s.", run.ReadyP50, run.ReadyP99)
			m.p("")
		}
	}
	m.p(coresNote+" Measured from the first due time to the last receipt.", r.machine.CPUs)
	m.p("")
	m.p("Settings and how each run was created:")
	m.p("")
	for _, sys := range latencySystems {
		if l, ok := res.lateness[sys]; ok {
			m.p("- %s: %s. Spread: %s. Burst: %s.", sys, l.Settings, l.Spread.Settings, l.Burst.Settings)
		}
	}
	m.p("")
}

func latRatio(peer time.Duration, peerOK bool, smq time.Duration, smqOK bool) string {
	switch {
	case !smqOK:
		return "–"
	case !peerOK:
		return "> " + ratio(float64(w4Bound), float64(smq))
	default:
		return ratio(float64(peer), float64(smq))
	}
}

func (r *report) w5(m *md) {
	res := r.res
	m.p("## 5. Drain")
	m.p("")
	m.p("%d messages already due, consumed and acknowledged; the clock runs from the consumers' start to the last acknowledgement (River: until the database shows every job completed), bounded by %s.", w5Messages, w5Bound)
	m.p("")
	var rows [][]string
	for _, sys := range []string{sysSMQWAL, sysRiverTuned, sysRiverDef, sysPGQ} {
		d, ok := res.drain[sys]
		if !ok {
			continue
		}
		row := []string{sys, fmt.Sprintf("%d of %d", d.Done, d.Target), d.Elapsed.Round(time.Millisecond).String(), rate(d.Rate)}
		if sys == sysSMQWAL {
			row = append(row, ratio(d.Rate, res.drain[sysRiverTuned].Rate), ratio(d.Rate, res.drain[sysRiverDef].Rate), ratio(d.Rate, res.drain[sysPGQ].Rate))
		} else {
			row = append(row, "", "", "")
		}
		rows = append(rows, append(row, cores(d.CPU)...))
	}
	m.table(append([]string{"system", "drained", "time", "msgs/s", "vs River tuned", "vs River defaults", "vs hand-written"}, coreHeaders...), rows)
	m.p(coresNote, r.machine.CPUs)
	m.p("")
	for _, sys := range []string{sysSMQWAL, sysRiverTuned, sysRiverDef, sysPGQ} {
		if d, ok := res.drain[sys]; ok {
			m.p("- %s: %s", sys, d.Settings)
		}
	}
	m.p("")
}

func (r *report) w6(m *md) {
	res := r.res
	m.p("## 6. Scale")
	m.p("")
	m.p("SMQ with a filler of future messages (PENDING, due in 30 days, copied straight into `messages`, then `VACUUM ANALYZE`): %d messages due over %s and a burst of %d in one second, received by long-polling consumers; and %d sequential polls (max=1) of a channel of READY messages.", w6Spread, w6Over, w6Burst, w6Polls)
	m.p("")
	var rows [][]string
	for _, f := range []int{w6Small, w6Large} {
		s, ok := res.scale[f]
		if !ok {
			continue
		}
		rows = append(rows, []string{fmt.Sprint(f), s.FillTime.Round(time.Millisecond).String(),
			msOr(s.Lateness.P50, s.Lateness.P50ok, w4Bound), msOr(s.Lateness.P99, s.Lateness.P99ok, w4Bound), msOr(s.Lateness.Max, s.Lateness.Maxok, w4Bound),
			ms(s.Promote), ms(s.Poll.P50), ms(s.Poll.P99)})
	}
	m.table([]string{"future messages stored", "filler copied in", "lateness p50 ms", "p99 ms", "max ms", fmt.Sprintf("burst of %d pollable after ms", w6Burst), "poll p50 ms", "poll p99 ms"}, rows)
}

func (r *report) w7(m *md) {
	res := r.res
	m.p("## 7. Steady state")
	m.p("")
	m.p("%d creates a second for %s, each due %s after it is sent, consumed as they fall due. End-to-end = received − scheduled time. CPU from `/proc/<pid>/stat` over the whole window: the queue's process, and every PostgreSQL process (the postmaster, its live children and those that exited). RSS sampled every second.", w7Rate, w7Duration, w7Delay)
	m.p("")
	var rows [][]string
	for _, sys := range []string{sysSMQWAL, sysRiverTuned} {
		s, ok := res.steady[sys]
		if !ok {
			continue
		}
		per := func(d time.Duration) string {
			if s.Received == 0 {
				return "–"
			}
			return fmt.Sprintf("%.3f", d.Seconds()/(float64(s.Received)/1000))
		}
		rows = append(rows, []string{sys, fmt.Sprintf("%d (%.0f/s)", s.Sent, float64(s.Sent)/s.Duration.Seconds()), fmt.Sprint(s.Received),
			msOr(s.EndToEnd.P50, s.EndToEnd.P50ok, w7Drain), msOr(s.EndToEnd.P99, s.EndToEnd.P99ok, w7Drain), msOr(s.EndToEnd.Max, s.EndToEnd.Maxok, w7Drain),
			ms(s.Create.P50), ms(s.Create.P99), per(s.CPUQueue), per(s.CPUPostgres), per(s.CPUQueue + s.CPUPostgres),
			fmt.Sprintf("%d / %d", s.RSS>>20, s.RSSMax>>20), cores(s.CPU)[3]})
	}
	m.table([]string{"system", "sent (offered rate held)", "received", "e2e p50 ms", "e2e p99 ms", "e2e max ms", "create p50 ms", "create p99 ms", "CPU s / 1000 (queue)", "CPU s / 1000 (PostgreSQL)", "CPU s / 1000 (total)", "RSS MiB (end / peak)", "cores: other"}, rows)
	for _, sys := range []string{sysSMQWAL, sysRiverTuned} {
		if s, ok := res.steady[sys]; ok {
			m.p("- %s: %s", sys, s.Settings)
		}
	}
	m.p("")
}

func (r *report) loopbackIdle(m *md) {
	res := r.res
	m.p("## Loopback latency, one client")
	m.p("")
	m.p("%d sequential requests after %d of warm-up, SMQ in WAL mode. Poll: `max=1`, `wait=0` on a channel of READY messages. Each operation runs with the raw client of workload 2 (one connection, the request written and the response read on the caller's goroutine, as `wrk` does), then with net/http's client, whose two goroutine hand-offs per request are the client's cost, not the server's. The targets are judged on the raw client's figures.", loopbackN, loopbackWarm)
	m.p("")
	var rows [][]string
	for _, op := range loopbackOps {
		if s, ok := res.loopback[op]; ok {
			std := res.loopbackStd[op]
			rows = append(rows, []string{op, ms(s.P50), ms(s.P99), ms(std.P50), ms(std.P99)})
		}
	}
	m.table([]string{"operation", "p50 ms", "p99 ms", "p50 ms, net/http client", "p99 ms, net/http client"}, rows)
	m.p("## Idle")
	m.p("")
	if res.idle != nil {
		m.p("SMQ idle (WAL mode, no clients): %d transactions in %s = **%.1f per second** (%s).", res.idle.Xacts, res.idle.Window.Round(time.Millisecond), res.idle.PerSec, res.idle.Details)
		if len(res.idle.Statements) > 0 {
			m.p("")
			m.p("The statements PostgreSQL logged for SMQ's database over the next %s (`log_statement = all`, turned on for that window only):", res.idle.StatementWindow)
			m.p("")
			var rows [][]string
			for i, s := range res.idle.Statements {
				if i == 12 {
					break
				}
				rows = append(rows, []string{fmt.Sprint(s.Count), fmt.Sprintf("%.1f", float64(s.Count)/res.idle.StatementWindow.Seconds()), "`" + strings.ReplaceAll(s.Statement, "|", "\\|") + "`"})
			}
			m.table([]string{"count", "per second", "statement"}, rows)
		}
	} else {
		m.p("Not measured.")
	}
	m.p("")
}

// riverVersion is the River module this test was built with.
func riverVersion() string {
	return moduleVersion("github.com/riverqueue/river")
}

// conditions renders the machine's state step by step: the disk's fsync
// time and the other load on the cores move the figures more than
// anything else on a shared 2-core machine.
func (r *report) conditions(m *md) {
	res := r.res
	if len(res.steps) == 0 {
		return
	}
	var fs []time.Duration
	var speeds []float64
	var rtts []time.Duration
	var other, wall time.Duration
	for _, s := range res.steps {
		fs = append(fs, s.Fsync)
		speeds = append(speeds, s.Speed)
		rtts = append(rtts, s.RTT)
		other += s.CPU.Other
		wall += s.CPU.Wall
	}
	slices.Sort(fs)
	slices.Sort(speeds)
	slices.Sort(rtts)
	m.p("## Conditions of the run")
	m.p("")
	m.p("The machine is shared: during this run other processes used **%.2f cores** on average (of %d), one core hashed **%.0f MB/s** of sha256 (median of the steps; from %.0f to %.0f), a byte went to and fro over loopback TCP in **%s** (from %s to %s), and an 8 KiB write + `fdatasync` in the run's directory took from %s to %s (median before each step). The host's speed changes through the day: the same workload has taken up to twice as long an hour later with nothing else running, so compare runs by these figures and by `GET /livez` below, which touches neither disk nor database. Read every figure against these; ratios between systems measured side by side (the systems take turns workload by workload) hold up better than absolute numbers. Each step starts with a `CHECKPOINT`, so that none pays for the pages the one before it dirtied.",
		other.Seconds()/max(wall.Seconds(), 1e-9), r.machine.CPUs, speeds[len(speeds)/2], speeds[0], speeds[len(speeds)-1],
		rtts[len(rtts)/2].Round(100*time.Nanosecond), rtts[0].Round(100*time.Nanosecond), rtts[len(rtts)-1].Round(100*time.Nanosecond), fs[0].Round(time.Microsecond), fs[len(fs)-1].Round(time.Microsecond))
	m.p("")
	m.p("<details><summary>Step by step</summary>")
	m.p("")
	var rows [][]string
	for _, s := range res.steps {
		rows = append(rows, append([]string{s.Name, s.Took.Round(time.Second).String(), s.Fsync.Round(time.Microsecond).String(), fmt.Sprintf("%.0f", s.Speed), s.RTT.Round(100 * time.Nanosecond).String(), s.Load}, cores(s.CPU)...))
	}
	m.table(append([]string{"step", "took", "fsync p50 before", "sha256 MB/s before", "loopback round trip before", "load avg before"}, coreHeaders...), rows)
	m.p("</details>")
	m.p("")
}
