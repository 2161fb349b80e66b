// Package bench runs SMQ side by side with River and a hand-written
// SKIP LOCKED queue on one PostgreSQL, in one run, and writes
// results.md and results.svg (issue 7). It runs only with SMQ_BENCH=1
// (`make bench`); otherwise the test skips at once.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"testing"
	"time"
)

// stepFailed is the panic value of must: it ends one step, not the run.
type stepFailed struct{ err error }

// must ends the current step when err is set.
func (b *bench) must(err error, what string) {
	if err != nil {
		panic(stepFailed{fmt.Errorf("%s: %w", what, err)})
	}
}

// fail ends the current step with an error.
func (b *bench) fail(format string, args ...any) {
	panic(stepFailed{fmt.Errorf(format, args...)})
}

// checkpoint writes out the pages the previous step dirtied, so that no
// system's step pays for writing another's. In one run SMQ's create step,
// right after the peers', measured half the creates/s of the same step run
// alone.
func (b *bench) checkpoint() {
	if b.admin == nil {
		return
	}
	if _, err := b.admin.Exec(b.ctx, `CHECKPOINT`); err != nil {
		b.t.Logf("checkpoint before the step: %v", err)
	}
}

// step runs one workload; a failure is noted in the results and the run
// goes on with the next.
func (b *bench) step(name string, fn func()) {
	if b.only != nil && !b.only.MatchString(name) {
		return
	}
	b.checkpoint()
	start := time.Now()
	fsync := fsyncProbe(b.dir)
	speed, rtt := cpuProbe(), rttProbe()
	load := loadAvg()
	c0 := b.cpuNow()
	b.t.Logf("── %s (fsync p50 %s, one core %.0f MB/s of sha256, loopback round trip %s, load %s)", name, fsync, speed, rtt, load)
	defer func() {
		cpu := b.cpuSince(c0)
		b.res.mu.Lock()
		b.res.steps = append(b.res.steps, stepCondition{Name: name, Took: time.Since(start), Fsync: fsync, Speed: speed, RTT: rtt, Load: load, CPU: cpu})
		b.res.mu.Unlock()
		b.t.Logf("   %s took %s (cores: %s)", name, time.Since(start).Round(time.Second), cpu)
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				msg := fmt.Sprint(r)
				if f, ok := r.(stepFailed); ok {
					msg = f.err.Error()
				} else {
					msg += "\n" + string(debug.Stack())
				}
				b.t.Errorf("%s failed: %s", name, msg)
				b.res.note(fmt.Sprintf("%s did not complete: %s", name, msg))
			}
		}()
		fn()
	}()
}

func TestBench(t *testing.T) {
	if os.Getenv("SMQ_BENCH") != "1" {
		t.Skip("benchmarks run only with SMQ_BENCH=1 (make bench): they take about 20 minutes and a PostgreSQL of their own")
	}
	outDir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "smq-bench-")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as the postgres user when this process is root.
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b := &bench{t: t, ctx: ctx, dir: dir, outDir: outDir, res: newResults()}
	// SMQ_BENCH_STEPS, a regular expression, runs only the steps whose
	// names match (for working on one workload; results.md then lacks the
	// others).
	if expr := os.Getenv("SMQ_BENCH_STEPS"); expr != "" {
		b.only = regexp.MustCompile(expr)
	}
	_ = os.RemoveAll(b.profileDir())

	started := time.Now()
	machine := describeMachine()
	b.step("build smq", b.buildSMQ)
	b.startPostgres()
	machine.Postgres = b.postgresVersion()
	b.step("set up the peers' schemas", func() {
		b.migrateRiver()
		b.setupPGQ()
	})

	// The systems take turns workload by workload, so that a change in the
	// machine's state (its disk's fsync time varies several-fold through
	// a day; other tenants) falls on all of them alike. The SMQ node idles
	// while the peers run; its share shows in the cores columns.
	var wal, mem *smqNode
	b.step("start SMQ (WAL)", func() { wal = b.startSMQ("wal") })
	smq := func(name string, fn func(n *smqNode)) {
		b.step(name, func() {
			if wal == nil {
				b.fail("no SMQ node (WAL)")
			}
			fn(wal)
		})
	}
	b.step("workload 1, peers: create latency", b.w1Peers)
	smq("workload 1, SMQ WAL", func(n *smqNode) { b.w1SMQ(n, sysSMQWAL) })
	b.step("workload 2, peers: create throughput", b.w2Peers)
	smq("workload 2, SMQ WAL", func(n *smqNode) { b.w2SMQ(n, sysSMQWAL) })
	b.step("workload 3, peers: bulk create", b.w3Peers)
	smq("workload 3, SMQ WAL", func(n *smqNode) { b.w3SMQ(n, sysSMQWAL) })
	smq("loopback latency", b.loopback)
	b.step("workload 4, peers: lateness", b.w4Peers)
	smq("workload 4, SMQ: lateness", b.w4SMQ)
	b.step("workload 5, peers: drain", b.w5Peers)
	smq("workload 5, SMQ: drain", b.w5SMQ)
	smq("workload 6, SMQ: scale", b.w6SMQ)
	b.step("workload 7, peers: steady state", b.w7Peers)
	smq("workload 7, SMQ: steady state", b.w7SMQ)
	smq("idle", b.idle)
	if wal != nil {
		wal.stop()
	}

	// SMQ in memory mode: ingest only (issue 3 asks for both modes).
	b.step("start SMQ (memory)", func() { mem = b.startSMQ("memory") })
	if mem != nil {
		b.step("workload 1, SMQ memory", func() { b.w1SMQ(mem, sysSMQMemory) })
		b.step("workload 2, SMQ memory", func() { b.w2SMQ(mem, sysSMQMemory) })
		b.step("workload 3, SMQ memory", func() { b.w3SMQ(mem, sysSMQMemory) })
		mem.stop()
	}

	rep := &report{res: b.res, machine: machine, started: started, finished: time.Now(), command: benchCommand()}
	if err := rep.write(filepath.Join(outDir, "results.md"), filepath.Join(outDir, "results.svg")); err != nil {
		t.Fatal(err)
	}
	t.Logf("results written to %s (run took %s)", filepath.Join(outDir, "results.md"), time.Since(started).Round(time.Second))
}

// benchCommand is the command that ran this benchmark, as the Makefile
// passes it (SMQ_BENCH_COMMAND), or the go test invocation.
func benchCommand() string {
	if c := os.Getenv("SMQ_BENCH_COMMAND"); c != "" {
		return c
	}
	return "SMQ_BENCH=1 go test -run TestBench -timeout 45m -v ./test/bench/"
}
