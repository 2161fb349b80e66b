package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/api"
	"github.com/smq/smq/store"
	"github.com/smq/smq/store/buffer"
	"github.com/smq/smq/store/postgres"
	"github.com/smq/smq/worker"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// runNode runs one SMQ node until ctx is done, then stops it gracefully:
// stop accepting, finish in-flight requests, flush the buffer, leave
// Temporal, deregister. ready, when set, receives the API's address once
// the node serves.
func runNode(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	if cfg.Migrate {
		v, err := postgres.Migrate(ctx, cfg.DatabaseURL, "")
		if err != nil {
			return err
		}
		log.Info("schema migrated", "version", v)
	}

	nodeID, err := resolveNodeID(cfg)
	if err != nil {
		return err
	}
	log = log.With("node", nodeID, "region", cfg.Region)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	deadLettered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smq_messages_dead_lettered_total",
		Help: "Messages moved to a dead-letter channel, by the channel they came from."}, []string{"channel"})
	reg.MustRegister(deadLettered)

	// onReady feeds the scheduler's metrics; it is set below, before the
	// API or the scheduler start.
	var onReady func(store.Promoted)
	db, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Options{Region: cfg.Region, Logger: log,
		OnDeadLetter: func(channel string) { deadLettered.WithLabelValues(channel).Inc() },
		OnClaimDue:   func(p store.Promoted) { onReady(p) }})
	if err != nil {
		return err
	}
	defer db.Close()

	// The WAL is replayed here, before the API accepts a request.
	var buf store.Buffer
	switch cfg.Buffer {
	case "memory":
		buf = buffer.NewMemory(buffer.MemoryConfig{MaxDepth: cfg.BufferMaxDepth, MaxBytes: cfg.BufferMaxBytes})
	default:
		start := time.Now()
		wal, err := buffer.OpenWAL(buffer.WALConfig{Dir: cfg.WALDir, MaxDepth: cfg.BufferMaxDepth,
			MaxBytes: cfg.BufferMaxBytes, Logger: log})
		if err != nil {
			return fmt.Errorf("open wal %s: %w", cfg.WALDir, err)
		}
		buf = wal
		log.Info("wal replayed", "dir", cfg.WALDir, "messages", wal.Stats().Depth, "took", time.Since(start).Round(time.Millisecond))
	}
	defer buf.Close()
	// After a crash between a flush's commit and its trim, the WAL still
	// holds records the database has. Drop them before serving, so that a
	// DELETE or PATCH never acts on a stale buffered copy alone. Without the
	// database the flusher does it on its first run.
	if mark, err := db.FlushMark(ctx, nodeID); err == nil && mark > 0 {
		if err := buf.Discard(ctx, mark); err != nil {
			return fmt.Errorf("discard flushed wal records: %w", err)
		}
	}

	linger := cfg.FlushLinger
	if linger == 0 {
		linger = -1 // none
	}
	flusher := buffer.NewFlusher(buf, db, buffer.FlusherConfig{Node: nodeID, Interval: cfg.FlushInterval,
		Linger: linger, MaxBatch: cfg.FlushMaxBatch, Logger: log})
	backoff := store.Backoff{Base: cfg.NackBackoffBase, Factor: cfg.NackBackoffFactor, Cap: cfg.NackBackoffCap}

	acts := &activities.Activities{Store: db, Notifier: db, Flusher: flusher, Logger: log,
		Region: cfg.Region, Node: nodeID, Config: activities.ActivityConfig{Backoff: backoff, StaleAfter: cfg.StaleAfter,
			TakeoverGrace: cfg.TakeoverGrace}}
	w, err := worker.New(worker.Config{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
		Region: cfg.Region, Node: nodeID, Version: version, Activities: acts, Store: db, Logger: log,
		HeartbeatInterval: cfg.HeartbeatInterval})
	if err != nil {
		return err
	}

	keys, _ := api.ParseKeys(cfg.APIKeys) // validated with the config
	draining := make(chan struct{})
	deps := api.Deps{Store: db, Buffer: buf, Notifier: db, Region: cfg.Region, NodeID: nodeID, Version: version,
		Logger: log, Keys: keys, Backoff: backoff, MaxPayload: cfg.MaxPayload, Registry: reg, Draining: draining}
	deps.Health = nodeHealth(db, buf, flusher, w)
	deps = deps.WithDefaults()
	onReady = registerNodeMetrics(reg, buf, flusher)
	acts.OnPromoted = onReady
	reg.MustRegister(newQueueDepth(db))
	handler := api.NewHandler(deps, api.Config{})

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (SMQ_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	srv := api.NewServer(cfg.HTTPAddr, handler, api.Config{})
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	if err := w.Start(ctx); err != nil {
		_ = srv.Close()
		return err
	}
	log.Info("smq node serving", "addr", ln.Addr().String(), "buffer", cfg.Buffer, "temporal", cfg.TemporalAddress)
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}

	log.Info("stopping: finishing requests, flushing the buffer")
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	close(draining)
	if err := srv.Shutdown(stopCtx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := w.Stop(stopCtx); err != nil {
		errs = append(errs, fmt.Errorf("worker stop: %w", err))
	}
	if err := flusher.Drain(stopCtx); err != nil {
		errs = append(errs, fmt.Errorf("final flush: %w (the WAL keeps what is left)", err))
	}
	log.Info("stopped", "buffered", buf.Stats().Depth)
	return errors.Join(errs...)
}

// resolveNodeID returns the configured node id or, with a WAL, the id kept
// in its directory (made on first start). The id names the node's flush
// watermark in the database, so a WAL must keep the same id across
// restarts.
func resolveNodeID(cfg Config) (string, error) {
	if cfg.NodeID != "" || cfg.Buffer != "wal" {
		if cfg.NodeID != "" {
			return cfg.NodeID, nil
		}
		return newNodeID(), nil
	}
	if err := os.MkdirAll(cfg.WALDir, 0o755); err != nil {
		return "", fmt.Errorf("wal dir: %w", err)
	}
	path := filepath.Join(cfg.WALDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	id := newNodeID()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("wal dir: %w", err)
	}
	return id, nil
}

func newNodeID() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s", strings.Split(host, ".")[0], hex.EncodeToString(b))
}
