package bench

import (
	"strings"
	"testing"
)

// The report of a run with nothing measured but one profile shows that
// profile's PostgreSQL statements, pipes escaped and long text cut.
func TestReportShowsStatements(t *testing.T) {
	res := newResults()
	res.profiles = []profile{{Name: "w5 SMQ drain", Seconds: 3, Statements: []pgStatement{
		{Query: "UPDATE messages m SET status = 'ACQUIRED' WHERE m.id::text || m.lease_token::text = ANY($1) " + strings.Repeat("x", 200), Calls: 601, Rows: 100000, TotalMs: 5003},
		{Query: "commit", Calls: 1000, TotalMs: 4.7},
	}}}
	md := (&report{res: res}).markdown()
	for _, want := range []string{
		"| statement | calls | rows | total ms | µs per row |",
		"| `UPDATE messages m SET status = 'ACQUIRED' WHERE m.id::text \\|\\| m.lease_token::text = ANY($1) xxxx",
		"…` | 601 | 100000 | 5003 | 50.0 |",
		"| `commit` | 1000 | 0 | 5 |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
