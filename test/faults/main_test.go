// Package faults runs real smq nodes, PostgreSQL and the embedded Temporal
// server (through test/harness), injects the faults a production node
// meets, and checks after each with a ledger that nothing accepted was lost,
// delivered twice or delivered early.
//
// By default (plain go test, CI) each fault is short; SMQ_FAULTS=full runs
// the long form (`make test-faults`), and SMQ_SOAK=1 the soak (`make soak`).
package faults

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smq/smq/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// full reports whether the long form of the suite runs.
func full() bool { return os.Getenv("SMQ_FAULTS") == "full" }

// pick returns short in the short form and long in the full one.
func pick[T any](short, long T) T {
	if full() {
		return long
	}
	return short
}

var nonRegion = regexp.MustCompile(`[^A-Za-z0-9-]+`)

// region is a region name of t's own, so that tests sharing a Temporal
// server never share workflows.
func region(t *testing.T) string {
	r := strings.Trim(nonRegion.ReplaceAllString(t.Name(), "-"), "-")
	if len(r) > 48 {
		r = r[:48]
	}
	return strings.ToLower(r)
}

// bed is what a fault test runs on.
type bed struct {
	pg   *harness.PG // nil when the database is shared
	db   string
	tmp  *harness.TemporalServer
	node *harness.NodeProc
}

type bedOptions struct {
	ownPostgres bool     // a PostgreSQL the test may stop
	ownTemporal bool     // a Temporal server the test may stop
	walDir      string   // the node's WAL directory; default: the harness's
	env         []string // more SMQ_* settings
}

func setup(t *testing.T, o bedOptions) *bed {
	t.Helper()
	b := &bed{}
	if o.ownPostgres {
		b.pg = harness.Postgres(t)
		b.db = b.pg.NewDatabase(t)
	} else {
		b.db = harness.Database(t)
	}
	if o.ownTemporal {
		b.tmp = harness.Temporal(t)
	} else {
		b.tmp = harness.SharedTemporal(t)
	}
	b.node = harness.Node(t, harness.NodeOptions{
		DatabaseURL:  b.db,
		TemporalAddr: b.tmp.Addr(),
		Region:       region(t),
		WALDir:       o.walDir,
		Env:          append([]string{"SMQ_LOG_LEVEL=info"}, o.env...),
	})
	return b
}

// finish stops the node gracefully (its buffer flushed) and checks the
// ledger: nothing lost, nothing twice, nothing early.
func (b *bed) finish(t *testing.T, ledger *harness.Ledger) harness.LedgerSummary {
	t.Helper()
	if err := b.node.Stop(); err != nil {
		t.Errorf("node stop: %v", err)
	}
	s := ledger.Check(t, b.db)
	if s.Accepted == 0 {
		t.Error("the ledger holds nothing: the test accepted no message")
	}
	return s
}

// since formats the time since start for reports.
func since(start time.Time) string { return time.Since(start).Round(time.Millisecond).String() }

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
