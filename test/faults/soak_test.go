package faults

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// soakSample is one look at the node during the soak.
type soakSample struct {
	at         time.Duration // since the soak began
	sinceStart time.Duration // since the node's last start
	rssMiB     float64
	goroutines int
	accepted   int
	delivered  int
}

// TestSoak runs a steady load for SMQ_SOAK_DURATION (10 minutes) with a
// random fault every 30 to 60 s (kill -9 of the node, a PostgreSQL
// restart, a Temporal restart), then checks the ledger and that the node's
// RSS and goroutines stayed flat, and writes soak-results.md. It runs only
// with SMQ_SOAK=1 (make soak).
func TestSoak(t *testing.T) {
	if os.Getenv("SMQ_SOAK") == "" {
		t.Skip("skipping the soak: set SMQ_SOAK=1 (make soak)")
	}
	duration := 10 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("SMQ_SOAK_DURATION")); err == nil {
		duration = d
	}
	b := setup(t, bedOptions{ownPostgres: true, ownTemporal: true})
	ledger := harness.NewLedger()
	l := startLoad(t, b.node, ledger, loadOptions{producers: 4, interval: 25 * time.Millisecond, visibility: 10})
	ctx := context.Background()

	began := time.Now()
	nodeStart := began
	var samples []soakSample
	var faults []string
	sample := func() {
		s := soakSample{at: time.Since(began), sinceStart: time.Since(nodeStart),
			accepted: l.acceptedCount(), delivered: l.deliveredCount()}
		s.rssMiB = rssMiB(b.node.PID())
		s.goroutines = goroutines(ctx, b.node)
		samples = append(samples, s)
	}
	nextFault := began.Add(jitter())
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for time.Since(began) < duration {
		<-tick.C
		sample()
		if time.Now().Before(nextFault) || time.Since(began) > duration-time.Minute {
			continue
		}
		start := time.Now()
		var what string
		switch rand.IntN(3) {
		case 0:
			b.node.Kill()
			b.node.Restart(t)
			nodeStart = time.Now()
			what = "node kill -9 and restart"
		case 1:
			require.NoError(t, b.pg.Stop())
			require.NoError(t, b.pg.Start(ctx))
			waitPollOK(t, b.node, time.Minute)
			what = "PostgreSQL restart"
		case 2:
			require.NoError(t, b.tmp.Stop())
			require.NoError(t, b.tmp.Start(ctx))
			what = "Temporal restart"
		}
		faults = append(faults, fmt.Sprintf("%s: %s (back in %s)", (start.Sub(began)).Round(time.Second), what, since(start)))
		t.Logf("fault %d at %s: %s", len(faults), start.Sub(began).Round(time.Second), what)
		nextFault = time.Now().Add(jitter())
	}
	l.drain(3 * time.Minute)
	report := l.report()
	s := b.finish(t, ledger)

	// Flat: the last minute against the second (the first is warm-up), on
	// samples taken at least 30 s after a node start.
	window := func(from, to time.Duration) (rss, gor float64) {
		var n float64
		for _, x := range samples {
			if x.at >= from && x.at < to && x.sinceStart >= 30*time.Second {
				rss, gor, n = rss+x.rssMiB, gor+float64(x.goroutines), n+1
			}
		}
		if n == 0 {
			return 0, 0
		}
		return rss / n, gor / n
	}
	rss1, gor1 := window(time.Minute, 2*time.Minute)
	rss2, gor2 := window(duration-time.Minute, duration)
	flat := rss1 > 0 && rss2 > 0 && rss2 <= 1.5*rss1+32 && gor2 <= 1.25*gor1+20

	var md strings.Builder
	fmt.Fprintf(&md, "# Soak results\n\nWritten by `make soak` (test/faults TestSoak) on %s, %d CPUs, %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&md, "%s of steady load (4 producers, one create every 25 ms each, half due at once and half within 2 s; 2 consumers polling with wait=1 and acking by receipt) on one WAL-mode node, its own PostgreSQL and its own Temporal server, with a random fault every 30–60 s.\n\n", duration)
	fmt.Fprintf(&md, "## Outcome\n\n- Ledger: %s.\n- Answers: %s.\n- RSS and goroutines flat: **%v** (second minute: %.0f MiB, %.0f goroutines; last minute: %.0f MiB, %.0f goroutines; samples taken under 30 s after a node start left out).\n\n",
		s, report, flat, rss1, gor1, rss2, gor2)
	fmt.Fprintf(&md, "## Faults\n\n")
	for _, f := range faults {
		fmt.Fprintf(&md, "- %s\n", f)
	}
	fmt.Fprintf(&md, "\n## Samples (every 10 s)\n\n| t | since node start | RSS MiB | goroutines | accepted | delivered |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, x := range samples {
		fmt.Fprintf(&md, "| %s | %s | %.0f | %d | %d | %d |\n", x.at.Round(time.Second), x.sinceStart.Round(time.Second), x.rssMiB, x.goroutines, x.accepted, x.delivered)
	}
	require.NoError(t, os.WriteFile("soak-results.md", []byte(md.String()), 0o644))
	t.Logf("soak: %s; %s; flat %v (RSS %.0f → %.0f MiB, goroutines %.0f → %.0f); %d faults", s, report, flat, rss1, rss2, gor1, gor2, len(faults))
	require.True(t, flat, "RSS or goroutines grew: RSS %.0f → %.0f MiB, goroutines %.0f → %.0f", rss1, rss2, gor1, gor2)
	require.Empty(t, s.Lost)
	require.Empty(t, s.Problems)
}

func jitter() time.Duration { return 30*time.Second + rand.N(30*time.Second) }

// rssMiB reads a process's resident set size, or 0.
func rssMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// goroutines scrapes go_goroutines from the node's /metrics (open: the node
// runs without keys), or returns -1.
func goroutines(ctx context.Context, node *harness.NodeProc) int {
	r := call(ctx, node, "GET", "/metrics", nil)
	if r.status != 200 {
		return -1
	}
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}
