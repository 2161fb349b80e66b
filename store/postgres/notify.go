package postgres

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the one LISTEN/NOTIFY channel; the payload is the topic.
const notifyChannel = "smq"

// hub fans wake-ups out to this process's subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{} // guarded by mu
}

func newHub() *hub { return &hub{subs: map[string]map[chan struct{}]struct{}{}} }

func (h *hub) subscribe(topic string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[topic] == nil {
		h.subs[topic] = map[chan struct{}]struct{}{}
	}
	h.subs[topic][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[topic], ch)
		if len(h.subs[topic]) == 0 {
			delete(h.subs, topic)
		}
		h.mu.Unlock()
	}
}

func (h *hub) wake(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[topic] {
		signal(ch)
	}
}

func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.subs {
		for ch := range subs {
			signal(ch)
		}
	}
}

// signal sends without blocking: a pending wake-up already says it all.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Subscribe implements store.Notifier.
func (s *Store) Subscribe(topic string) (<-chan struct{}, func()) { return s.hub.subscribe(topic) }

// notify wakes topics on every node: through NOTIFY where the database has
// it (this process hears its own notifications back on its listener), and
// directly in this process where it has not.
func (s *Store) notify(ctx context.Context, topics []string) {
	if len(topics) == 0 {
		return
	}
	slices.Sort(topics)
	topics = slices.Compact(topics)
	if !s.dialect.Listen {
		for _, t := range topics {
			s.hub.wake(t)
		}
		return
	}
	// A wake-up is a hint; a lost one costs a waiter its wait, not a message.
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t`, notifyChannel, topics); err != nil {
		s.opts.Logger.Debug("notify failed", "err", err)
	}
}

// listen holds one connection that LISTENs and hands every notification to
// the hub, reconnecting with backoff. After each (re)connect it wakes every
// waiter, since notifications sent while it was away are lost.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cfg, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		s.opts.Logger.Warn("notification listener lost its connection; waiters fall back to their timeouts", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	connected()
	s.hub.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		s.hub.wake(n.Payload)
	}
}

// pollFallback stands in for LISTEN where the database has none
// (CockroachDB): every waiter re-checks the database each FallbackPoll.
// Wake-ups caused by this process are still immediate (see notify).
func (s *Store) pollFallback(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.opts.FallbackPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.hub.wakeAll()
		}
	}
}
