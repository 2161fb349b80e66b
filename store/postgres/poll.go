package postgres

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smq/smq/store"
)

// Concurrent polls of one channel on one node are combined: while
// pollParallel queries of the channel run, the polls that arrive wait, and
// the next query leases for all of them at once (pollCombineMax messages at
// most) and shares the result out in due order. Without this, N pollers of a
// channel each lock-skip the rows the others hold (FOR UPDATE SKIP LOCKED),
// so a poll scans up to N times what it takes, and each pays a statement and
// a commit of its own. Two queries at a time, not one, keep both of a small
// machine's cores busy (a drain of 100,000 with one: 26,000 msgs/s).
const (
	pollParallel   = 2
	pollCombineMax = 1000
	// pollQueryTimeout bounds a combined query, which runs on behalf of
	// several polls and so ignores the cancellation of the one that runs it.
	pollQueryTimeout = 30 * time.Second
)

// pollKey names the polls that can share a query.
type pollKey struct {
	channel, region string
	visibility      time.Duration
}

// pollWaiter is one poll waiting for a combined query.
type pollWaiter struct {
	max int
	// done is closed when msgs and err are set, or when the waiter is to
	// run the next query itself (lead).
	done chan struct{}
	lead bool
	msgs []*store.Message
	err  error
}

// pollQueue holds the polls of a key waiting while pollParallel queries of
// that key run; the key has a queue exactly while a query runs.
type pollQueue struct {
	running int
	waiting []*pollWaiter
}

// polls combines concurrent polls; the zero value is ready.
type polls struct {
	mu     sync.Mutex
	queues map[pollKey]*pollQueue // guarded by mu
}

// MessagePoll implements store.Store: the local region first (READY, then
// due PENDING), then, when asked or when the local region has nothing, the
// other regions' READY messages.
func (s *Store) MessagePoll(ctx context.Context, p *store.MessagePollParams) ([]*store.Message, error) {
	region := cmp.Or(p.Region, s.opts.Region)
	msgs, err := s.pollLocal(ctx, p, region)
	if err != nil {
		return nil, err
	}
	if len(msgs) < p.Max && (p.Subsidize || len(msgs) == 0) {
		more, err := s.pollRegion(ctx, p, region, false, p.Max-len(msgs))
		if err != nil {
			return s.leased(msgs, err)
		}
		msgs = append(msgs, more...)
	}
	return msgs, nil
}

// leased returns what a poll leased before a later query of it failed:
// those leases are committed, so failing the poll would leave them to
// expire undelivered. With nothing leased, the error is the poll's.
func (s *Store) leased(msgs []*store.Message, err error) ([]*store.Message, error) {
	if len(msgs) == 0 {
		return nil, err
	}
	s.opts.Logger.Warn("poll: delivering what was leased before a query failed", "leased", len(msgs), "err", err)
	return msgs, nil
}

// pollLocal leases up to p.Max messages of the local region, in a query of
// its own or combined with the concurrent polls of the same channel.
func (s *Store) pollLocal(ctx context.Context, p *store.MessagePollParams, region string) ([]*store.Message, error) {
	key := pollKey{channel: p.Channel, region: region, visibility: p.Visibility}
	me := &pollWaiter{max: p.Max, done: make(chan struct{})}
	s.polls.mu.Lock()
	if s.polls.queues == nil {
		s.polls.queues = map[pollKey]*pollQueue{}
	}
	q := s.polls.queues[key]
	if q == nil {
		q = &pollQueue{}
		s.polls.queues[key] = q
	}
	if q.running < pollParallel {
		q.running++
		s.polls.mu.Unlock()
		return s.leadPolls(ctx, key, p, region, me)
	}
	q.waiting = append(q.waiting, me)
	s.polls.mu.Unlock()

	select {
	case <-me.done:
	case <-ctx.Done():
		s.polls.mu.Lock()
		if i := slices.Index(q.waiting, me); i >= 0 {
			q.waiting = slices.Delete(q.waiting, i, i+1)
			s.polls.mu.Unlock()
			return nil, ctx.Err()
		}
		s.polls.mu.Unlock()
		// Taken by a query already, or chosen to lead: either way the
		// queue counts on this poll, so see it through.
		<-me.done
	}
	if me.lead {
		return s.leadPolls(ctx, key, p, region, me)
	}
	return me.msgs, me.err
}

// leadPolls runs one query for me and for the polls waiting on key (as
// many as fit in pollCombineMax), shares the messages out in due order,
// then hands its place to the next waiter, or gives it up.
func (s *Store) leadPolls(ctx context.Context, key pollKey, p *store.MessagePollParams, region string, me *pollWaiter) ([]*store.Message, error) {
	s.polls.mu.Lock()
	q := s.polls.queues[key]
	batch := []*pollWaiter{me}
	total := me.max
	n := 0
	for _, w := range q.waiting {
		if total+w.max > pollCombineMax {
			break
		}
		total += w.max
		n++
	}
	batch = append(batch, q.waiting[:n]...)
	q.waiting = slices.Clone(q.waiting[n:])
	s.polls.mu.Unlock()

	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pollQueryTimeout)
	msgs, err := s.leaseLocal(qctx, p, region, total)
	cancel()
	for _, w := range batch {
		k := min(w.max, len(msgs))
		w.msgs, w.err = msgs[:k:k], err
		msgs = msgs[k:]
	}

	s.polls.mu.Lock()
	if len(q.waiting) == 0 {
		if q.running--; q.running == 0 {
			delete(s.polls.queues, key)
		}
	} else {
		next := q.waiting[0]
		q.waiting = q.waiting[1:]
		next.lead = true
		close(next.done)
	}
	s.polls.mu.Unlock()
	for _, w := range batch[1:] {
		close(w.done)
	}
	return me.msgs, me.err
}

// leaseLocal leases up to limit messages of the local region: READY ones,
// then due PENDING ones, in due order.
func (s *Store) leaseLocal(ctx context.Context, p *store.MessagePollParams, region string, limit int) ([]*store.Message, error) {
	msgs, err := s.pollRegion(ctx, p, region, true, limit)
	if err != nil {
		return nil, err
	}
	if len(msgs) < limit {
		due, err := s.claimDue(ctx, p, region, limit-len(msgs))
		if err != nil {
			return s.leased(msgs, err)
		}
		msgs = append(msgs, due...)
	}
	return msgs, nil
}

// pollRegion leases up to limit READY messages of a region, or, when local
// is false, of every region but that one. acquired_at is
// clock_timestamp(), not now(): now() is when the statement's transaction
// began, which on a busy server can be milliseconds before the snapshot that
// saw the row READY, and so before the message's scheduled_at.
//
// The rows are locked in a sub-select and updated through lockedRows, not by
// joining a CTE to messages: the planner sizes such a join by the LIMIT and
// the table's statistics, and with statistics that lag behind the table it
// hash-joined the CTE to a sequential scan of messages. The array leaves it
// one plan, a fetch of each locked row (see keyedPlans). The other regions
// are region < $2 OR region > $2, not region <> $2: two ranges of
// messages_ready, where <> leaves the planner the whole channel's entries
// to read and, when statistics say the table holds nothing but the local
// region, a sequential scan of the table instead.
func (s *Store) pollRegion(ctx context.Context, p *store.MessagePollParams, region string, local bool, limit int) ([]*store.Message, error) {
	inRegion := `region = $2::` + s.dialect.RegionType
	if !local {
		inRegion = `(region < $2::` + s.dialect.RegionType + ` OR region > $2::` + s.dialect.RegionType + `)`
	}
	msgs, err := s.lease(ctx, `UPDATE messages m SET status = 'ACQUIRED',
			lease_token = gen_random_uuid(), acquired_at = clock_timestamp(),
			leased_until = clock_timestamp() + $4::interval, attempts = m.attempts + 1, updated_at = now()
		WHERE `+s.lockedRows(`FROM messages
			WHERE channel = $1 AND status = 'READY' AND `+inRegion+`
			ORDER BY scheduled_at
			LIMIT $3
			FOR UPDATE SKIP LOCKED`)+`
		RETURNING `+messageCols, p.Channel, region, limit, p.Visibility)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(msgs, func(a, b *store.Message) int { return a.ScheduledAt.Compare(b.ScheduledAt) })
	return msgs, nil
}

// asyncCommit is the prelude of a lease where the dialect allows it (see
// lease); asyncCommitKeptPlans the same with keptPlans.
const (
	asyncCommit          = `SELECT set_config('synchronous_commit', 'off', true)`
	asyncCommitKeptPlans = asyncCommit + `, ` + keptPlans
)

// lease runs a statement that leases messages and returns them. Where the
// dialect allows it (Dialect.AsyncLease: PostgreSQL), its commit does not wait for the WAL to reach the disk
// (synchronous_commit off, for this transaction only): a lease lost in a
// database crash leaves the message as it was before the poll, to be leased
// again, which at-least-once delivery allows, just as it allows a lease to
// expire. Creates, acks, nacks, reschedules and deletes keep their durable
// commit: losing one of those would undo what a client was told. The wait
// was about a third of a one-message poll (loopback p50 1.08 ms with it,
// 0.78 ms without).
//
// set_config(…, true) and the statement go in one pipeline, with one Sync,
// so PostgreSQL runs them in one implicit transaction and the setting ends
// with it (TestLeaseCommitsWithoutWaitingForTheDisk checks both). The same
// prelude lets the lease keep its plan (keptPlans).
func (s *Store) lease(ctx context.Context, sql string, args ...any) ([]*store.Message, error) {
	if !s.dialect.AsyncLease {
		return collectMessages(s.pool.Query(ctx, sql, args...))
	}
	prelude := asyncCommit
	if s.dialect.KeptPlans {
		prelude = asyncCommitKeptPlans
	}
	b := &pgx.Batch{}
	b.Queue(prelude)
	b.Queue(sql, args...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, mapErr(err)
	}
	msgs, err := collectMessages(br.Query())
	if err != nil {
		return nil, err
	}
	return msgs, mapErr(br.Close())
}

// lockedRows is the WHERE clause of an UPDATE of messages m that takes the
// rows its locking sub-select (from: FROM messages … FOR UPDATE SKIP LOCKED)
// returns. On PostgreSQL it finds them again by ctid, a Tid Scan that reads
// each row's page; by id, each row cost a probe of the primary key (a lease
// of 1,000 READY rows: 29 ms by id, 16 ms by ctid; a promotion of 10,000:
// 150-210 ms, 123-132 ms). A row the sub-select locked keeps its ctid until
// this statement updates it. This is the form PostgreSQL's manual gives for
// an UPDATE of a limited number of rows.
func (s *Store) lockedRows(from string) string {
	col := s.dialect.RowID
	return `m.` + col + ` = ANY(ARRAY(SELECT ` + col + ` ` + from + `))`
}

// claimDue leases up to limit due PENDING messages of the channel in the
// local region at once, without waiting for the scheduler to promote
// them: one write per message instead of two, and consumers never idle
// while due messages wait for a promotion pass (a burst of 100,000 due in
// one second became pollable in 2.8 s with promotion alone). It reads the
// region's due PENDING rows, a backlog the scheduler normally keeps near
// empty. The scheduler's lateness metric learns of these messages through
// Options.OnClaimDue.
func (s *Store) claimDue(ctx context.Context, p *store.MessagePollParams, region string, limit int) ([]*store.Message, error) {
	msgs, err := s.lease(ctx, `UPDATE messages m SET status = 'ACQUIRED',
			lease_token = gen_random_uuid(), acquired_at = clock_timestamp(),
			leased_until = clock_timestamp() + $4::interval, attempts = m.attempts + 1, updated_at = now()
		WHERE `+s.lockedRows(`FROM messages
			WHERE status = 'PENDING' AND region = $2::`+s.dialect.RegionType+` AND scheduled_at <= now() AND channel = $1
			ORDER BY scheduled_at
			LIMIT $3
			FOR UPDATE SKIP LOCKED`)+`
		RETURNING `+messageCols, p.Channel, region, limit, p.Visibility)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	slices.SortFunc(msgs, func(a, b *store.Message) int { return a.ScheduledAt.Compare(b.ScheduledAt) })
	if s.opts.OnClaimDue != nil {
		claimed := store.Promoted{Count: len(msgs), Lateness: make([]time.Duration, len(msgs))}
		for i, m := range msgs {
			claimed.Lateness[i] = max(m.AcquiredAt.Sub(m.ScheduledAt), 0)
		}
		s.opts.OnClaimDue(claimed)
	}
	return msgs, nil
}
