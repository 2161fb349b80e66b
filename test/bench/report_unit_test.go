package bench

import (
	"strings"
	"testing"
	"time"
)

// The report of a run with nothing measured but one profile shows that
// profile's PostgreSQL statements, pipes escaped and long text cut.
func TestReportShowsStatements(t *testing.T) {
	res := newResults()
	res.profiles = []profile{{Name: "w5 SMQ drain", Seconds: 3, Statements: []pgStatement{
		{Query: "UPDATE messages m SET status = 'ACQUIRED' WHERE m.id::text || m.lease_token::text = ANY($1) " + strings.Repeat("x", 200), Calls: 601, Rows: 100000, TotalMs: 5003},
		{Query: "commit", Calls: 1000, TotalMs: 4.7},
	}}}
	reportHas(t, (&report{res: res}).markdown(),
		"| statement | calls | rows | total ms | µs per row |",
		"| `UPDATE messages m SET status = 'ACQUIRED' WHERE m.id::text \\|\\| m.lease_token::text = ANY($1) xxxx",
		"…` | 601 | 100000 | 5003 | 50.0 |",
		"| `commit` | 1000 | 0 | 5 |  |",
	)
}

// reportHas fails t for each of wants that md lacks, and then shows md.
func reportHas(t *testing.T, md string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// Workload 2's table gives each row's CPU per create, all processes
// together, and says what rate that cost allows on the machine's cores.
func TestReportBoundsCreatesByCPU(t *testing.T) {
	res := newResults()
	sec := time.Second
	res.throughput[sysSMQWAL] = map[int]tput{16: {Rate: 15000, PerSync: 6, SyncMean: 300 * time.Microsecond, CPU: cpuSplit{SMQ: sec, Postgres: 150 * time.Millisecond, Bench: 350 * time.Millisecond, Other: sec, Wall: sec}}}
	res.throughput[sysRiver] = map[int]tput{16: {Rate: 5000, CPU: cpuSplit{Postgres: 1200 * time.Millisecond, Bench: 600 * time.Millisecond, Wall: sec}}}
	reportHas(t, (&report{res: res, machine: machine{CPUs: 2}}).markdown(),
		"| SMQ (WAL) | 16 | 15000 |",
		"| 100 | 1.00 | 0.15 | 0.35 | 1.00 |",
		"| River | 16 | 5000 |",
		"| 360 | 0.00 | 1.20 | 0.60 | 0.00 |",
		"- **16 callers:** a durable create took 100 µs (River's `Insert` 360 µs). At that cost 2 cores make at most 20000 creates/s with every core busy, ×4.00 River's rate in this run, against the ×4 of the target. The WAL's writer, which makes the group writes one at a time, was in one 75% of the run.",
	)
}
