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

// step runs one workload; a failure is noted in the results and the run
// goes on with the next.
func (b *bench) step(name string, fn func()) {
	if b.only != nil && !b.only.MatchString(name) {
		return
	}
	start := time.Now()
	b.t.Logf("── %s", name)
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
	b.t.Logf("   %s took %s", name, time.Since(start).Round(time.Second))
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

	// The peers first, while no SMQ node runs (its embedded Temporal server
	// would take CPU from them).
	b.step("workload 1, peers: create latency", b.w1Peers)
	b.step("workload 2, peers: create throughput", b.w2Peers)
	b.step("workload 3, peers: bulk create", b.w3Peers)
	b.step("workload 4, peers: lateness", b.w4Peers)
	b.step("workload 5, peers: drain", b.w5Peers)
	b.step("workload 7, peers: steady state", b.w7Peers)

	// SMQ in memory mode: ingest only (issue 3 asks for both modes).
	var mem, wal *smqNode
	b.step("start SMQ (memory)", func() {
		if b.smqBin == "" {
			b.fail("no smq binary")
		}
		mem = b.startSMQ("memory")
	})
	if mem != nil {
		b.step("workload 1, SMQ memory", func() { b.w1SMQ(mem, sysSMQMemory) })
		b.step("workload 2, SMQ memory", func() { b.w2SMQ(mem, sysSMQMemory) })
		b.step("workload 3, SMQ memory", func() { b.w3SMQ(mem, sysSMQMemory) })
		mem.stop()
	}
	b.step("start SMQ (WAL)", func() {
		if b.smqBin == "" {
			b.fail("no smq binary")
		}
		wal = b.startSMQ("wal")
	})
	if wal != nil {
		b.step("workload 1, SMQ WAL", func() { b.w1SMQ(wal, sysSMQWAL) })
		b.step("workload 2, SMQ WAL", func() { b.w2SMQ(wal, sysSMQWAL) })
		b.step("workload 3, SMQ WAL", func() { b.w3SMQ(wal, sysSMQWAL) })
		b.step("loopback latency", func() { b.loopback(wal) })
		b.step("workload 4, SMQ: lateness", func() { b.w4SMQ(wal) })
		b.step("workload 5, SMQ: drain", func() { b.w5SMQ(wal) })
		b.step("workload 6, SMQ: scale", func() { b.w6SMQ(wal) })
		b.step("workload 7, SMQ: steady state", func() { b.w7SMQ(wal) })
		b.step("idle", func() { b.idle(wal) })
		wal.stop()
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
