package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// nopSink is a database that takes every batch at once and keeps nothing,
// so that a benchmark's Flusher costs only the buffer's Next and Commit.
type nopSink struct{ mark atomic.Uint64 }

func (s *nopSink) MessageInsertMany(_ context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	s.mark.Store(p.Seq)
	return &store.MessageInsertManyResult{Inserted: len(p.Messages)}, nil
}

func (s *nopSink) FlushMark(context.Context, string) (uint64, error) { return s.mark.Load(), nil }

// benchIDs numbers the messages of all benchmarks: uuid.New reads
// crypto/rand, which would cost more than what is measured.
var benchIDs atomic.Uint64

// benchMessages returns n messages shaped like a typical create: a small
// JSON payload, a channel, a region and the times the API sets.
func benchMessages(n int) []*store.Message {
	payload := []byte(`{"order":12345,"customer":"c-6789","amount":"42.00"}`)
	msgs := make([]*store.Message, n)
	first := benchIDs.Add(uint64(n)) - uint64(n)
	for i := range msgs {
		var id uuid.UUID
		binary.BigEndian.PutUint64(id[8:], first+uint64(i))
		id[6] = 0x70 // version 7, as the API makes them
		msgs[i] = &store.Message{
			ID:          id,
			Channel:     "orders",
			Payload:     payload,
			Status:      store.StatusPending,
			ScheduledAt: epoch,
			MaxAttempts: 10,
			CreatedAt:   epoch,
			UpdatedAt:   epoch,
			Region:      "eu",
		}
	}
	return msgs
}

// cpuTime is the user and system CPU the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskBytes is the space dir takes on disk (Badger's files are sparse, so
// their sizes say little).
func diskBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// BenchmarkWALAppend measures appends as the API issues them, with
// concurrent callers, while a Flusher with a database that costs nothing
// takes the records out again (Next and Commit), so the cost of trimming
// the WAL is counted with the cost of writing it. An op is one Append.
//
// Besides ns/op and allocs/op it reports msgs/s, the process's CPU per
// message (cpu-ns/msg: the WAL's writer, Badger's goroutines and the
// flusher, on every core), appends per Badger transaction (each one fsync)
// and the space the WAL directory takes at the end.
func BenchmarkWALAppend(b *testing.B) {
	for _, bc := range []struct {
		name           string
		callers, batch int
	}{
		{"single-c1", 1, 1},
		{"single-c16", 16, 1},
		{"single-c64", 64, 1},
		{"batch-100-c4", 4, 100},
		{"batch-1000", 4, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			w := openWAL(b, WALConfig{Dir: dir, MaxDepth: 1 << 30, MaxBytes: 1 << 40})
			ctx, cancel := context.WithCancel(context.Background())
			f := NewFlusher(w, &nopSink{}, FlusherConfig{Node: "bench", Logger: discardLogger})
			flushed := make(chan error, 1)
			go func() { flushed <- f.Run(ctx, nil) }()
			defer func() {
				cancel()
				if err := <-flushed; !errors.Is(err, context.Canceled) {
					b.Error(err)
				}
			}()

			commits := w.Commits.Load()
			cpu := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range bc.callers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := w.Append(ctx, benchMessages(bc.batch)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			msgs := float64(b.N * bc.batch)
			b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(cpuTime()-cpu)/msgs, "cpu-ns/msg")
			b.ReportMetric(float64(b.N)/float64(max(1, w.Commits.Load()-commits)), "appends/commit")
			b.ReportMetric(float64(diskBytes(dir))/(1<<20), "disk-MiB")
		})
	}
}
