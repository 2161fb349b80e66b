package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/smq/smq/store"
)

// messageCols lists a message's columns in the order scanMessage reads them,
// each prefixed with the table alias m.
const messageCols = `m.id, m.channel, m.payload, m.status, m.scheduled_at, m.attempts, m.max_attempts,
	m.lease_token, m.leased_until, m.acquired_at, m.created_at, m.updated_at, m.region::text,
	coalesce(m.dedup_key, ''), coalesce(m.original_channel, ''), coalesce(m.last_error, '')`

func scanMessage(row pgx.Row) (*store.Message, error) {
	var (
		m                       store.Message
		token                   *uuid.UUID
		leasedUntil, acquiredAt *time.Time
		status                  string
		attempts, maxAttempts   int32
	)
	err := row.Scan(&m.ID, &m.Channel, &m.Payload, &status, &m.ScheduledAt, &attempts, &maxAttempts,
		&token, &leasedUntil, &acquiredAt, &m.CreatedAt, &m.UpdatedAt, &m.Region,
		&m.DedupKey, &m.OriginalChannel, &m.LastError)
	if err != nil {
		return nil, err
	}
	m.Status = store.Status(status)
	m.Attempts, m.MaxAttempts = int(attempts), int(maxAttempts)
	if token != nil {
		m.LeaseToken = *token
	}
	if leasedUntil != nil {
		m.LeasedUntil = *leasedUntil
	}
	if acquiredAt != nil {
		m.AcquiredAt = *acquiredAt
	}
	return &m, nil
}

// scanMessages reads rows of messageCols with pgx's Scan.
func scanMessages(rows pgx.Rows) ([]*store.Message, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Message, error) { return scanMessage(r) })
}

// collectMessages reads rows of messageCols: by rawMessages where they
// come in the types and forms it reads (PostgreSQL's, in a plain query and
// in a lease's pipeline alike: TestRawMessagesReadsWhatScanReads), else by
// scanMessage.
func collectMessages(rows pgx.Rows, err error) ([]*store.Message, error) {
	if err != nil {
		return nil, mapErr(err)
	}
	if !rawFields(rows.FieldDescriptions()) {
		msgs, err := scanMessages(rows)
		return msgs, mapErr(err)
	}
	defer rows.Close()
	var (
		d    rawMessages
		msgs []*store.Message
	)
	for rows.Next() {
		m, err := d.message(rows.RawValues())
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, mapErr(rows.Err())
}

// MessageInsertMany implements store.Store. A large batch without dedup
// keys (a buffer's flush) goes by COPY; anything else in one round trip of
// INSERT … ON CONFLICT DO NOTHING. Either way the rows, the channel names
// and the flush watermark commit together.
func (s *Store) MessageInsertMany(ctx context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	n := len(p.Messages)
	res := &store.MessageInsertManyResult{}
	if n == 0 && p.Node == "" {
		return res, nil
	}
	if p.Node != "" && len(p.Seqs) != n {
		return nil, fmt.Errorf("insert of a flush: %d sequences for %d messages", len(p.Seqs), n)
	}
	if s.dialect.Copy && s.opts.CopyMin > 0 && n >= s.opts.CopyMin && !slices.ContainsFunc(p.Messages, func(m *store.Message) bool { return m.DedupKey != "" }) {
		inserted, err := s.copyMany(ctx, p)
		if err == nil {
			res.Inserted = inserted
			return res, nil
		}
		// An id already in the table (not expected: ids are made at ingest
		// and the watermark keeps a replay out) fails the whole COPY; the
		// INSERT below skips such rows instead of failing the flush forever.
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != pgUniqueViolation {
			return nil, mapErr(err)
		}
		s.opts.Logger.Warn("flush: COPY found a message already stored; inserting the batch row by row instead", "err", err)
	}
	return s.insertDedup(ctx, p)
}

// insertDedup is insertMany, again for the messages whose dedup key was
// taken at the insert but whose holder was gone by the lookup after it
// (acked, deleted or dead-lettered between the two statements): with no
// holder to answer with, the message must be inserted, not reported as
// created. A flush (p.Node set) does not retry: its messages were already
// answered, and one whose key was taken when it reached the database is a
// duplicate dropped, as the flush's dedup does.
func (s *Store) insertDedup(ctx context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	res, missing, err := s.insertMany(ctx, p)
	for attempt := 0; err == nil && len(missing) > 0 && p.Node == ""; attempt++ {
		if attempt == 3 {
			return nil, fmt.Errorf("%w: the holders of %d dedup keys kept changing", store.ErrUnavailable, len(missing))
		}
		again := &store.MessageInsertManyParams{Messages: make([]*store.Message, len(missing))}
		for j, i := range missing {
			again.Messages[j] = p.Messages[i]
		}
		var r *store.MessageInsertManyResult
		var still []int
		r, still, err = s.insertMany(ctx, again)
		if err != nil {
			break
		}
		res.Inserted += r.Inserted
		for j, id := range r.Existing {
			if res.Existing == nil {
				res.Existing = map[int]uuid.UUID{}
			}
			res.Existing[missing[j]] = id
		}
		for k, j := range still {
			still[k] = missing[j]
		}
		missing = still
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// dedupRaced, when set by a test, runs between insertMany's insert and its
// lookup of the dedup keys' holders.
var dedupRaced func()

// pgUniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const pgUniqueViolation = "23505"

// copyColumns are the columns copyMany writes, in its row order.
var copyColumns = []string{"id", "channel", "payload", "status", "scheduled_at", "max_attempts",
	"created_at", "updated_at", "region"}

// copySQL is copyMany's COPY statement.
var copySQL = `COPY messages (` + strings.Join(copyColumns, ", ") + `) FROM STDIN (FORMAT binary)`

// copyMany writes p by COPY in a transaction with the channels and the
// watermark, and wakes the channels and regions it fed. A due message is
// READY by the database's clock, the one every other statement compares
// scheduled_at with: by the node's, a node whose clock ran ahead would make
// messages READY, and deliverable, before they are due.
func (s *Store) copyMany(ctx context.Context, p *store.MessageInsertManyParams) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	msgs := p.Messages
	var now time.Time
	if p.Node != "" {
		var mark int64
		if err := tx.QueryRow(ctx, flushLockSQL+`, now()`, p.Node).Scan(&mark, &now); err != nil {
			return 0, err
		}
		msgs = unflushed(p, mark)
	} else if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return 0, err
	}
	// The (status, channel, region) triples the batch feeds, for the
	// channels table and the wake-ups.
	type target struct {
		status          store.Status
		channel, region string
	}
	targets := map[target]bool{}
	rows := newCopyRows(len(msgs) * 160)
	for _, m := range msgs {
		status := store.StatusPending
		if !m.ScheduledAt.After(now) {
			status = store.StatusReady
		}
		region := cmp.Or(m.Region, s.opts.Region)
		created := m.CreatedAt
		if created.IsZero() {
			created = now
		}
		// In copyColumns' order.
		rows.row(len(copyColumns))
		rows.uuid(m.ID)
		rows.text(m.Channel)
		rows.bytes(m.Payload)
		rows.text(string(status))
		rows.timestamptz(m.ScheduledAt)
		rows.int4(int32(max(m.MaxAttempts, 1)))
		rows.timestamptz(created)
		rows.timestamptz(now)
		rows.text(region)
		targets[target{status, m.Channel, region}] = true
	}
	if len(msgs) > 0 {
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(rows.done()), copySQL); err != nil {
			return 0, err
		}
	}
	var names, wake []string
	for t := range targets {
		names = append(names, t.channel)
		wake = append(wake, wakeTopic(t.status, t.channel, t.region))
	}
	slices.Sort(names) // a fixed order, so concurrent flushes cannot deadlock on channels
	names = slices.Compact(names)
	b := &pgx.Batch{}
	if len(names) > 0 {
		b.Queue(`INSERT INTO channels (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, names)
	}
	if p.Node != "" {
		b.Queue(flushMarkSQL, p.Node, int64(p.Seq))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	s.notify(ctx, wake)
	return len(msgs), nil
}

// flushLockSQL reads a node's flush watermark ($1 node) and locks it for
// the rest of the transaction, making the row first if the node has none.
// A flush takes it before it writes anything, so flushes of one node run
// one after the other, and each sees what the one before it committed:
// the upsert waits for a transaction that holds the row and then reads its
// latest version, whatever the statement's snapshot.
const flushLockSQL = `INSERT INTO flush_marks (node_id, seq, updated_at) VALUES ($1, 0, now())
	ON CONFLICT (node_id) DO UPDATE SET seq = flush_marks.seq
	RETURNING seq`

// unflushed returns the messages of p above the flush mark.
func unflushed(p *store.MessageInsertManyParams, mark int64) []*store.Message {
	if len(p.Seqs) == 0 || int64(p.Seqs[0]) > mark {
		return p.Messages // the usual case: the mark is below the batch
	}
	var msgs []*store.Message
	for i, m := range p.Messages {
		if int64(p.Seqs[i]) > mark {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// flushMarkSQL raises a node's flush watermark ($1 node, $2 seq).
const flushMarkSQL = `INSERT INTO flush_marks (node_id, seq, updated_at) VALUES ($1, $2, now())
	ON CONFLICT (node_id) DO UPDATE SET seq = greatest(flush_marks.seq, excluded.seq), updated_at = now()`

// insertMany is MessageInsertMany in one round trip of INSERT … ON
// CONFLICT DO NOTHING, which skips rows whose id or dedup key is taken. It
// also returns the indexes of the messages skipped for a dedup key whose
// holder the lookup after the insert did not find.
func (s *Store) insertMany(ctx context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, []int, error) {
	n := len(p.Messages)
	res := &store.MessageInsertManyResult{}
	var (
		ids       = make([][16]byte, n)
		channels  = make([]string, n)
		payloads  = make([][]byte, n)
		scheduled = make([]time.Time, n)
		maxAtt    = make([]int32, n)
		created   = make([]time.Time, n)
		regions   = make([]string, n)
		dedup     = make([]string, n)
		hasDedup  bool
	)
	for i, m := range p.Messages {
		ids[i], channels[i], payloads[i], scheduled[i] = m.ID, m.Channel, m.Payload, m.ScheduledAt
		maxAtt[i] = int32(max(m.MaxAttempts, 1))
		created[i] = m.CreatedAt
		if created[i].IsZero() {
			created[i] = time.Now()
		}
		regions[i] = m.Region
		if regions[i] == "" {
			regions[i] = s.opts.Region
		}
		dedup[i] = m.DedupKey
		hasDedup = hasDedup || m.DedupKey != ""
	}
	names := slices.Clone(channels)
	slices.Sort(names) // a fixed order, so concurrent flushes cannot deadlock on channels
	names = slices.Compact(names)

	// The batch runs as one implicit transaction. A flush's first locks its
	// node's mark, and its insert then skips what is at or below it, as
	// copyMany does.
	b := &pgx.Batch{}
	args := []any{ids, channels, payloads, scheduled, maxAtt, created, regions, dedup}
	seqArg, seqCol, aboveMark := "", "", ""
	if p.Node != "" {
		b.Queue(flushLockSQL, p.Node)
		seqs := make([]int64, n)
		for i, seq := range p.Seqs {
			seqs[i] = int64(seq)
		}
		args = append(args, seqs, p.Node)
		seqArg, seqCol = `, $9::int8[]`, `, seq`
		aboveMark = `WHERE t.seq > (SELECT seq FROM flush_marks WHERE node_id = $10)`
	}
	inserted := map[uuid.UUID]bool{}
	var wake []string
	if n > 0 {
		b.Queue(`INSERT INTO messages AS m (id, channel, payload, status, scheduled_at, max_attempts,
				created_at, updated_at, region, dedup_key)
			SELECT id, channel, payload, CASE WHEN scheduled_at <= now() THEN 'READY' ELSE 'PENDING' END,
				scheduled_at, max_attempts, created_at, now(), region::`+s.dialect.RegionType+`, NULLIF(dedup_key, '')
			FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::timestamptz[], $5::int4[],
				$6::timestamptz[], $7::text[], $8::text[]`+seqArg+`)
				AS t(id, channel, payload, scheduled_at, max_attempts, created_at, region, dedup_key`+seqCol+`)
			`+aboveMark+`
			ON CONFLICT DO NOTHING
			RETURNING m.id, m.channel, m.status, m.region::text`,
			args...).Query(func(rows pgx.Rows) error {
			var (
				id                      uuid.UUID
				channel, status, region string
			)
			_, err := pgx.ForEachRow(rows, []any{&id, &channel, &status, &region}, func() error {
				inserted[id] = true
				wake = append(wake, wakeTopic(store.Status(status), channel, region))
				return nil
			})
			return err
		})
		b.Queue(`INSERT INTO channels (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, names)
	}
	if p.Node != "" {
		b.Queue(flushMarkSQL, p.Node, int64(p.Seq))
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, mapErr(err)
	}
	res.Inserted = len(inserted)
	s.notify(ctx, wake)

	var missing []int
	if hasDedup && res.Inserted < n {
		if dedupRaced != nil {
			dedupRaced()
		}
		existing, gone, err := s.dedupLookup(ctx, p.Messages, inserted)
		if err != nil {
			return nil, nil, err
		}
		res.Existing, missing = existing, gone
	}
	return res, missing, nil
}

// dedupLookup finds, for each message not inserted because its dedup key was
// taken, the id of the message holding the key, and lists the messages
// whose key nobody holds any more.
func (s *Store) dedupLookup(ctx context.Context, msgs []*store.Message, inserted map[uuid.UUID]bool) (existing map[int]uuid.UUID, gone []int, err error) {
	var channels, keys []string
	for _, m := range msgs {
		if m.DedupKey != "" && !inserted[m.ID] {
			channels, keys = append(channels, m.Channel), append(keys, m.DedupKey)
		}
	}
	// LIMIT 1 (the index is unique) keeps the sub-select from being
	// flattened into a join that the planner could hash over a scan of
	// messages: one probe of messages_dedup per key, whatever the
	// statistics say.
	rows, err := s.pool.Query(ctx, `SELECT k.channel, k.dedup_key, h.id
		FROM unnest($1::text[], $2::text[]) AS k(channel, dedup_key),
		LATERAL (SELECT m.id FROM messages m WHERE m.channel = k.channel AND m.dedup_key = k.dedup_key LIMIT 1) AS h`,
		channels, keys)
	if err != nil {
		return nil, nil, mapErr(err)
	}
	holder := map[[2]string]uuid.UUID{}
	var (
		channel, key string
		id           uuid.UUID
	)
	if _, err := pgx.ForEachRow(rows, []any{&channel, &key, &id}, func() error {
		holder[[2]string{channel, key}] = id
		return nil
	}); err != nil {
		return nil, nil, mapErr(err)
	}
	existing = map[int]uuid.UUID{}
	for i, m := range msgs {
		if m.DedupKey == "" || inserted[m.ID] {
			continue
		}
		id, ok := holder[[2]string{m.Channel, m.DedupKey}]
		switch {
		case !ok:
			gone = append(gone, i)
		case id != m.ID:
			existing[i] = id
		}
	}
	return existing, gone, nil
}

// MessageGet implements store.Store.
func (s *Store) MessageGet(ctx context.Context, id uuid.UUID) (*store.Message, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, `SELECT `+messageCols+` FROM messages m WHERE m.id = $1`, [16]byte(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	return m, mapErr(err)
}

// MessageDelete implements store.Store.
func (s *Store) MessageDelete(ctx context.Context, id uuid.UUID) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM messages WHERE id = $1`, [16]byte(id))
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// MessageUpdate implements store.Store.
func (s *Store) MessageUpdate(ctx context.Context, p *store.MessageUpdateParams) (*store.Message, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, `UPDATE messages m SET
			scheduled_at = coalesce($2, m.scheduled_at),
			payload = coalesce($3, m.payload),
			status = CASE WHEN $2::timestamptz IS NULL THEN m.status
				WHEN $2 <= now() THEN 'READY' ELSE 'PENDING' END,
			updated_at = now()
		WHERE m.id = $1 AND m.status <> 'ACQUIRED'
		RETURNING `+messageCols, [16]byte(p.ID), p.ScheduledAt, p.Payload))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, getErr := s.MessageGet(ctx, p.ID); getErr != nil {
			return nil, getErr
		}
		return nil, fmt.Errorf("message %s is leased to a consumer: %w", p.ID, store.ErrConflict)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	s.notify(ctx, []string{wakeTopic(m.Status, m.Channel, m.Region)})
	return m, nil
}

// receiptArrays splits receipts, without repeats, into their ids and their
// pair keys (see leasedBy).
func receiptArrays(rs []store.Receipt) (ids [][16]byte, keys []string) {
	seen := make(map[store.Receipt]bool, len(rs))
	for _, r := range rs {
		if !seen[r] {
			seen[r] = true
			ids, keys = append(ids, r.ID), append(keys, r.ID.String()+r.Token.String())
		}
	}
	return ids, keys
}

// byIDs is the condition that a row of messages m has one of the ids in the
// uuid[] parameter param, for statements that take the ids of a request.
// The ids go through a sub-select so that the planner, which cannot see
// how many come out, probes the primary key for each: given the array
// itself, it weighs a thousand probes against a scan and, on a table of
// 100,000 rows, chose a sequential scan (22 ms where the probes take 8 ms).
func byIDs(param string) string {
	return `m.id = ANY(ARRAY(SELECT unnest(` + param + `::uuid[])))`
}

// leased is the condition that a row of messages m is ACQUIRED, written so
// that no partial index's predicate matches it. Written plainly, it lets the
// planner read a lookup by id from messages_leased, every lease of the
// table, which it does when its statistics say there are hardly any (the
// table was analyzed full of READY rows, then consumers leased them).
const leased = `m.status || '' = 'ACQUIRED'`

// leasedBy is the condition that a row of messages m is ACQUIRED under one
// of the receipts passed as receiptArrays' ids (the uuid[] parameter ids)
// and keys (the text[] parameter keys), and that the lease has not expired.
// A key is the receipt's id and token in their text form, which has a fixed
// length, so a row matches a key exactly when its (id, lease_token) pair is
// a receipt's: the pairs are matched in one hashed lookup per row, with no
// join to plan. An expired lease is refused whether or not the janitor has
// swept it yet, so that what a late consumer is told does not depend on
// when the janitor last ran.
func leasedBy(ids, keys string) string {
	return byIDs(ids) + ` AND ` + leased + ` AND m.leased_until > now() AND m.id::text || m.lease_token::text = ANY(` + keys + `::text[])`
}

// hashedReceipts is the fewest receipts that strict leaves to a custom
// plan: PostgreSQL's MIN_ARRAY_SIZE_FOR_HASHED_SAOP.
const hashedReceipts = 9

// rawUUIDs hands ids to pgx as [16]byte, which it encodes directly; a
// uuid.UUID goes through a failed encode attempt (an error built with fmt)
// before the driver.Valuer fallback, which profiles of acks showed costing a
// fifth of the node's CPU.
func rawUUIDs(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// strict runs fn in a transaction that commits only when fn touched want
// rows: receipts are all or nothing.
//
// Fewer than hashedReceipts receipts run under keptPlans. A kept plan
// matches each row's key against the keys one by one: PostgreSQL hashes an
// array for = ANY only when the array is a constant of a custom plan, and
// only from 9 elements on. Kept, an ack of 1,000 receipts took 9.1 ms
// instead of 1.5; below 9, a custom plan searches them one by one too.
func (s *Store) strict(ctx context.Context, want int, fn func(tx pgx.Tx) (int, error)) (int, error) {
	var opts pgx.TxOptions
	if s.dialect.KeptPlans && want < hashedReceipts {
		// One round trip, as BEGIN alone: pgx sends a query without
		// arguments as a simple query, which may hold several statements.
		opts.BeginQuery = `BEGIN; SELECT ` + keptPlans
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return 0, mapErr(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	n, err := fn(tx)
	if err != nil {
		return 0, mapErr(err)
	}
	if n != want {
		return 0, fmt.Errorf("%w: %d of %d receipts do not name a current lease", store.ErrStaleLease, want-n, want)
	}
	return n, mapErr(tx.Commit(ctx))
}

// MessageAck implements store.Store.
func (s *Store) MessageAck(ctx context.Context, p *store.MessageAckParams) (store.Counts, error) {
	if len(p.Receipts) > 0 {
		ids, keys := receiptArrays(p.Receipts)
		counts := store.Counts{}
		_, err := s.strict(ctx, len(ids), func(tx pgx.Tx) (int, error) {
			err := countChannels(ctx, tx, counts, `DELETE FROM messages m WHERE `+leasedBy("$1", "$2")+`
				RETURNING m.channel`, ids, keys)
			return counts.Total(), err
		})
		if err != nil {
			return nil, err
		}
		return counts, nil
	}
	counts := store.Counts{}
	err := countChannels(ctx, s.pool, counts, `DELETE FROM messages m WHERE `+byIDs("$1")+` AND `+leased+`
		RETURNING m.channel`, rawUUIDs(p.IDs))
	return counts, mapErr(err)
}

// countChannels runs sql, which returns one channel per row, and counts
// the rows by channel into counts.
func countChannels(ctx context.Context, q querier, counts store.Counts, sql string, args ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	var channel string
	_, err = pgx.ForEachRow(rows, []any{&channel}, func() error {
		counts[channel]++
		return nil
	})
	return err
}

// retrySQL puts the rows of messages m that match where (a condition with
// parameters from $6) back for a retry: PENDING at now + backoff, or, once
// attempts reach max_attempts, READY on the channel's dead-letter channel
// with the original channel and the last error kept. Parameters: $1
// explicit delay (NULL for the backoff), $2 backoff base seconds, $3 factor,
// $4 cap seconds, $5 the error to record. Every expression reads the row as
// it was before the update.
//
// The backoff, base × factor^(attempts-1) up to the cap, is worked out in
// logarithms with the exponent capped first: power() itself overflows
// float8 past about 1,024 doublings, and the error would fail the whole
// UPDATE, a janitor's recovery of every expired lease of the region with
// it. Attempts grow without bound on a dead-letter channel, where a
// message is never dead-lettered again.
func retrySQL(where string) string {
	const dead = `(m.attempts >= m.max_attempts AND m.channel NOT LIKE '%` + store.DLQSuffix + `')`
	return `UPDATE messages m SET
		status = CASE WHEN ` + dead + ` THEN 'READY' ELSE 'PENDING' END,
		channel = CASE WHEN ` + dead + ` THEN m.channel || '` + store.DLQSuffix + `' ELSE m.channel END,
		original_channel = CASE WHEN ` + dead + ` THEN m.channel ELSE m.original_channel END,
		dedup_key = CASE WHEN ` + dead + ` THEN NULL ELSE m.dedup_key END,
		attempts = CASE WHEN ` + dead + ` THEN 0 ELSE m.attempts END,
		scheduled_at = CASE WHEN ` + dead + ` THEN now() ELSE now() + coalesce($1::interval,
			make_interval(secs => least($4::float8, $2::float8 * exp(least(
				ln(greatest($3::float8, 1)) * greatest(m.attempts - 1, 0),
				ln(greatest($4::float8 / greatest($2::float8, 1e-6), 1))))) * (0.5 + random() / 2))) END,
		lease_token = NULL, leased_until = NULL, acquired_at = NULL,
		last_error = $5, updated_at = now()
	WHERE ` + where + `
	RETURNING m.channel, m.status, m.region::text`
}

func retryArgs(delay *time.Duration, reason string, b store.Backoff) []any {
	b = b.WithDefaults()
	return []any{delay, b.Base.Seconds(), b.Factor, b.Cap.Seconds(), reason}
}

// retry runs retrySQL(where) and counts what it did by the channel each
// message was polled from, dead-lettered messages included and also counted
// in dead. It returns the wake-up topics of the channels and regions it
// touched, for the caller to notify once the change is committed: sent
// from inside q's transaction, the notify would need a second connection
// of the pool while holding one (and, with every connection so held, wait
// for ever), and could wake a waiter before the change is visible.
func (s *Store) retry(ctx context.Context, q querier, where string, args []any) (counts store.Counts, dead int, wake []string, err error) {
	rows, err := q.Query(ctx, retrySQL(where), args...)
	if err != nil {
		return nil, 0, nil, mapErr(err)
	}
	var (
		channel, status, region string
		dlqChannels             []string
	)
	counts = store.Counts{}
	_, err = pgx.ForEachRow(rows, []any{&channel, &status, &region}, func() error {
		if store.Status(status) == store.StatusReady {
			dead++
			dlqChannels = append(dlqChannels, channel)
			original := strings.TrimSuffix(channel, store.DLQSuffix)
			counts[original]++
			if s.opts.OnDeadLetter != nil {
				s.opts.OnDeadLetter(original)
			}
		} else {
			counts[channel]++
		}
		wake = append(wake, wakeTopic(store.Status(status), channel, region))
		return nil
	})
	if err != nil {
		return nil, 0, nil, mapErr(err)
	}
	if len(dlqChannels) > 0 {
		slices.Sort(dlqChannels)
		if _, err := q.Exec(ctx, `INSERT INTO channels (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, slices.Compact(dlqChannels)); err != nil {
			return nil, 0, nil, mapErr(err)
		}
	}
	return counts, dead, wake, nil
}

// MessageNack implements store.Store.
func (s *Store) MessageNack(ctx context.Context, p *store.MessageNackParams) (store.Counts, error) {
	args := retryArgs(p.Delay, p.Reason, p.Backoff)
	if len(p.Receipts) > 0 {
		ids, keys := receiptArrays(p.Receipts)
		var (
			counts store.Counts
			wake   []string
		)
		_, err := s.strict(ctx, len(ids), func(tx pgx.Tx) (n int, err error) {
			counts, _, wake, err = s.retry(ctx, tx, leasedBy("$6", "$7"), append(args, ids, keys))
			return counts.Total(), err
		})
		if err != nil {
			return nil, err
		}
		s.notify(ctx, wake)
		return counts, nil
	}
	counts, _, wake, err := s.retry(ctx, s.pool, byIDs("$6")+` AND `+leased, append(args, rawUUIDs(p.IDs)))
	s.notify(ctx, wake)
	return counts, err
}

// MessageExtend implements store.Store.
func (s *Store) MessageExtend(ctx context.Context, p *store.MessageExtendParams) (int, error) {
	ids, keys := receiptArrays(p.Receipts)
	return s.strict(ctx, len(ids), func(tx pgx.Tx) (int, error) {
		tag, err := tx.Exec(ctx, `UPDATE messages m SET leased_until = now() + $3::interval, updated_at = now()
			WHERE `+leasedBy("$1", "$2"), ids, keys, p.Visibility)
		return int(tag.RowsAffected()), err
	})
}

// MessagePromote implements store.Store. The rows are locked with SKIP
// LOCKED before they are updated: the polls that lease due PENDING rows
// themselves (claimDue) hold some of them, and a promotion that waited for
// those locks stalled a burst (100,000 due in one second took 3.6–4.5 s to
// be pollable instead of 1.9–2.6 s). As in pollRegion, the locked rows are
// updated through lockedRows, not a join.
func (s *Store) MessagePromote(ctx context.Context, p *store.MessagePromoteParams) (*store.Promoted, error) {
	region := cmp.Or(p.Region, s.opts.Region)
	rows, err := s.pool.Query(ctx, `UPDATE messages m SET status = 'READY', updated_at = now()
		WHERE `+s.lockedRows(`FROM messages
			WHERE status = 'PENDING' AND region = $1::`+s.dialect.RegionType+` AND scheduled_at <= now()
			ORDER BY scheduled_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED`)+`
		RETURNING m.channel, (extract(epoch FROM now() - m.scheduled_at) * 1000000)::int8`, region, p.Limit)
	if err != nil {
		return nil, mapErr(err)
	}
	res := &store.Promoted{}
	var (
		channel  string
		lateUS   int64
		channels = map[string]bool{}
	)
	if _, err := pgx.ForEachRow(rows, []any{&channel, &lateUS}, func() error {
		channels[channel] = true
		res.Lateness = append(res.Lateness, time.Duration(lateUS)*time.Microsecond)
		return nil
	}); err != nil {
		return nil, mapErr(err)
	}
	res.Count = len(res.Lateness)
	wake := make([]string, 0, len(channels))
	for c := range channels {
		wake = append(wake, store.ReadyTopic(c))
	}
	s.notify(ctx, wake)
	if res.Count < p.Limit {
		if res.NextDue, err = s.MessageNextDue(ctx, region); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// MessageNextDue implements store.Store. ORDER BY … LIMIT 1, not min():
// with statistics that lag behind a fast-growing table, PostgreSQL plans
// min() as an aggregate over every PENDING row of the region (23 ms for
// 86,000 rows, on each flush that woke the scheduler).
func (s *Store) MessageNextDue(ctx context.Context, region string) (time.Time, error) {
	var next time.Time
	err := s.pool.QueryRow(ctx, `SELECT scheduled_at FROM messages
		WHERE status = 'PENDING' AND region = $1::`+s.dialect.RegionType+`
		ORDER BY scheduled_at LIMIT 1`, cmp.Or(region, s.opts.Region)).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, mapErr(err)
	}
	return next, nil
}

// MessageRecover implements store.Store.
func (s *Store) MessageRecover(ctx context.Context, p *store.MessageRecoverParams) (*store.Recovered, error) {
	args := append(retryArgs(nil, "lease expired", p.Backoff), cmp.Or(p.Region, s.opts.Region), p.Limit)
	counts, dead, wake, err := s.retry(ctx, s.pool, s.lockedRows(`FROM messages
		WHERE status = 'ACQUIRED' AND region = $6::`+s.dialect.RegionType+` AND leased_until < now()
		ORDER BY leased_until LIMIT $7 FOR UPDATE SKIP LOCKED`), args)
	s.notify(ctx, wake)
	if err != nil {
		return nil, err
	}
	return &store.Recovered{Retried: counts.Total() - dead, DeadLettered: dead}, nil
}

// MessageRegions implements store.Store with a loose index scan of each
// partial index (one index probe per region), not a scan of the table.
func (s *Store) MessageRegions(ctx context.Context) ([]string, error) {
	distinct := func(status string) string {
		return `(WITH RECURSIVE r AS (
			(SELECT region FROM messages WHERE status = '` + status + `' ORDER BY region LIMIT 1)
			UNION ALL
			SELECT (SELECT m.region FROM messages m WHERE m.status = '` + status + `' AND m.region > r.region
				ORDER BY m.region LIMIT 1) FROM r WHERE r.region IS NOT NULL
		) SELECT region::text FROM r WHERE region IS NOT NULL)`
	}
	rows, err := s.pool.Query(ctx, distinct("PENDING")+` UNION `+distinct("ACQUIRED")+` ORDER BY 1`)
	if err != nil {
		return nil, mapErr(err)
	}
	regions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return regions, mapErr(err)
}

// MessageCounts counts messages by channel and status. It reads the whole
// table, so callers cache it (the metrics scrape does, for 15 s).
func (s *Store) MessageCounts(ctx context.Context) (map[[2]string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT channel, status, count(*) FROM messages GROUP BY channel, status`)
	if err != nil {
		return nil, mapErr(err)
	}
	counts := map[[2]string]int64{}
	var (
		channel, status string
		n               int64
	)
	_, err = pgx.ForEachRow(rows, []any{&channel, &status, &n}, func() error {
		counts[[2]string{channel, status}] = n
		return nil
	})
	return counts, mapErr(err)
}

// ChannelList implements store.Store.
func (s *Store) ChannelList(ctx context.Context, limit, offset int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT name FROM channels ORDER BY name LIMIT $1 OFFSET $2`, limit, offset)
	if err != nil {
		return nil, mapErr(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return names, mapErr(err)
}

// ChannelStats implements store.Store. It reads the channel's rows, so it is
// meant for an operator, not for a hot loop.
func (s *Store) ChannelStats(ctx context.Context, channel string) (*store.ChannelStats, error) {
	st := &store.ChannelStats{Channel: channel, ByStatus: map[store.Status]int64{}, DueByHour: make([]int64, 24)}
	rows, err := s.pool.Query(ctx, `SELECT status, count(*), min(scheduled_at) FROM messages
		WHERE channel = $1 GROUP BY status`, channel)
	if err != nil {
		return nil, mapErr(err)
	}
	var (
		status string
		count  int64
		oldest time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&status, &count, &oldest}, func() error {
		st.ByStatus[store.Status(status)] = count
		if store.Status(status) == store.StatusReady {
			st.OldestDue = oldest
		}
		return nil
	}); err != nil {
		return nil, mapErr(err)
	}
	rows, err = s.pool.Query(ctx, `SELECT greatest(floor(extract(epoch FROM scheduled_at - now()) / 3600), 0)::int4 AS h, count(*)
		FROM messages WHERE channel = $1 AND status = 'PENDING' AND scheduled_at < now() + interval '24 hours'
		GROUP BY h`, channel)
	if err != nil {
		return nil, mapErr(err)
	}
	var hour int32
	if _, err := pgx.ForEachRow(rows, []any{&hour, &count}, func() error {
		st.DueByHour[min(int(hour), 23)] += count
		return nil
	}); err != nil {
		return nil, mapErr(err)
	}
	return st, nil
}

// FlushMark implements store.Store.
//
// It reads the mark with flushLockSQL, on its own: the upsert waits for a
// flush of the node still in flight (even the node's first, which inserts
// the row) and returns the mark that flush left, so a flusher whose insert
// failed on the way back learns whether it committed.
func (s *Store) FlushMark(ctx context.Context, node string) (uint64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, flushLockSQL, node).Scan(&seq)
	return uint64(seq), mapErr(err)
}

// wakeTopic is the Notifier topic that a message in status wakes: its
// channel's long polls when READY, its region's scheduler when PENDING.
func wakeTopic(status store.Status, channel, region string) string {
	if status == store.StatusReady {
		return store.ReadyTopic(channel)
	}
	return store.DueTopic(region)
}

// querier is what a pool and a transaction share.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}
