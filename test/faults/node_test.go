package faults

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/smq/smq/test/harness"
)

var walReplayed = regexp.MustCompile(`wal replayed.* messages=(\d+)`)

// TestNodeKill kills a WAL-mode node with kill -9 under load and restarts
// it: every create that got a 201 before the kill was in the fsynced WAL,
// so it is replayed, flushed and delivered once.
func TestNodeKill(t *testing.T) {
	b := setup(t, bedOptions{})
	ledger := harness.NewLedger()
	l := startLoad(t, b.node, ledger, loadOptions{visibility: 5})
	l.waitAccepted(200, time.Minute)

	for i := range pick(1, 3) {
		l.waitAccepted(300, time.Minute)
		before := l.acceptedCount()
		killedAt := time.Now()
		b.node.Kill()
		b.node.Restart(t)
		restart := time.Since(killedAt)
		// The first create after the restart, and how soon a message
		// made then is delivered.
		var probe string
		harness.WaitFor(t, 30*time.Second, 10*time.Millisecond, "a create after the restart", func() (bool, error) {
			r, id, _ := create(context.Background(), b.node, ledger, l.o.channel, 0, -1)
			probe = id
			return r.status == http.StatusCreated, r.err
		})
		delivered := l.waitDelivered([]string{probe}, 30*time.Second)
		log, _ := os.ReadFile(b.node.LogPath())
		m := walReplayed.FindAllStringSubmatch(string(log), -1)
		replayed := "?"
		if len(m) > 0 {
			replayed = m[len(m)-1][1]
		}
		t.Logf("kill %d: %d accepted before it; back and ready %s after kill -9 (WAL replayed %s messages); a message created then was delivered %s after the kill",
			i+1, before, ms(restart), replayed, ms(delivered.Sub(killedAt)))
	}
	l.waitAccepted(200, time.Minute)
	l.drain(pick(60*time.Second, 2*time.Minute))
	t.Logf("load: %s", l.report())
	// Requests in flight at the kill fail without an answer ("error"),
	// never with a 5xx.
	l.requireNoServerErrors()
	b.finish(t, ledger)
}
