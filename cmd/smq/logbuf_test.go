package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the flusher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogBuffer(t *testing.T) {
	out := &syncBuffer{}
	buf := &logBuffer{w: out}
	log := slog.New(bufferedHandler{Handler: slog.NewTextHandler(buf, nil), buf: buf})

	log.Info("request", "n", 1)
	require.Empty(t, out.String(), "an INFO line waits for the next flush")
	log.Warn("trouble")
	require.Contains(t, out.String(), "n=1", "a WARN line writes what was held")
	require.Contains(t, out.String(), "trouble")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); buf.run(ctx) }()
	log.Info("later")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "later") },
		5*time.Second, 10*time.Millisecond, "the ticker writes held lines")

	// A burst beyond logFlushBytes is written without waiting.
	cancel()
	<-done
	big := strings.Repeat("x", 1024)
	for range logFlushBytes/1024 + 1 {
		log.Info(big)
	}
	require.Greater(t, len(out.String()), logFlushBytes)

	log.With("k", "v").WithGroup("g").Info("last", "a", 1)
	buf.Flush()
	require.Contains(t, out.String(), "msg=last k=v g.a=1")
}
