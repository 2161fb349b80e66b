package harness

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smq/smq/api/client"
)

// Ledger is a test's record of what SMQ promised and what it did: every
// message id that got a 2xx, with its scheduled time, and every delivery a
// consumer acked. Check compares it with the database at the end. It is
// safe for concurrent use.
type Ledger struct {
	mu         sync.Mutex // guards the fields below
	accepted   map[string]time.Time
	deliveries map[string][]Delivery
	strangers  int // deliveries of ids never accepted
}

// Delivery is one receipt of a message by a consumer that then acked it.
type Delivery struct {
	// ReceivedAt is when the consumer got the poll's answer (test clock).
	ReceivedAt time.Time
	// AcquiredAt is when the node leased it, as the node said; zero when
	// unknown.
	AcquiredAt time.Time
	// Node names the node that delivered it, for messages.
	Node string
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{accepted: map[string]time.Time{}, deliveries: map[string][]Delivery{}}
}

// Accept records that the create of id got a 2xx saying it is scheduled
// at scheduledAt.
func (l *Ledger) Accept(id string, scheduledAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted[id] = scheduledAt
}

// AcceptCreated records a single create's 201 body.
func (l *Ledger) AcceptCreated(m client.CreatedMessage) {
	l.Accept(m.MessageId.String(), m.ScheduledAt)
}

// AcceptBatch records a batch create's 2xx results; results without a
// scheduled time are recorded with the zero time (due at once).
func (l *Ledger) AcceptBatch(rs []client.BatchResult) {
	for _, r := range rs {
		var at time.Time
		if r.ScheduledAt != nil {
			at = *r.ScheduledAt
		}
		l.Accept(r.MessageId.String(), at)
	}
}

// Deliver records that a consumer received id at receivedAt and acked it.
func (l *Ledger) Deliver(id string, d Delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.accepted[id]; !ok {
		l.strangers++
	}
	l.deliveries[id] = append(l.deliveries[id], d)
}

// DeliverPolled records the acked messages of a poll received at
// receivedAt from node.
func (l *Ledger) DeliverPolled(ms []client.PolledMessage, receivedAt time.Time, node string) {
	for _, m := range ms {
		l.Deliver(m.Id.String(), Delivery{ReceivedAt: receivedAt, AcquiredAt: m.AcquiredAt, Node: node})
	}
}

// Accepted returns how many ids were accepted.
func (l *Ledger) Accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// AcceptedIDs returns the accepted ids, sorted.
func (l *Ledger) AcceptedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Deliveries returns the deliveries recorded for id.
func (l *Ledger) Deliveries(id string) []Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Delivery(nil), l.deliveries[id]...)
}

// LedgerSummary is what Check found.
type LedgerSummary struct {
	Accepted  int // ids that got a 2xx
	Delivered int // of those, delivered and acked exactly once, on time
	Waiting   int // of those, not delivered and still in the database as scheduled
	// Strangers counts deliveries of ids the ledger never saw accepted:
	// creates whose answer the client did not get (a crash, a timeout).
	// They are not errors.
	Strangers int
	// Lost names accepted ids neither delivered nor in the database.
	Lost []string
	// Problems describes every other broken promise: a double or early
	// delivery, an acked message back in the database, a changed schedule.
	Problems []string
}

// Check fails t unless every accepted id was delivered (and acked) exactly
// once, never before its scheduled time, and is gone from the database; or
// was not delivered and still waits in the database (PENDING or READY)
// with its original schedule. Call it once the nodes have flushed their
// buffers (stopped gracefully, or restarted and flushed what they
// replayed): a message still in a buffer counts as lost.
func (l *Ledger) Check(t testing.TB, databaseURL string) LedgerSummary {
	t.Helper()
	s, err := l.Summary(context.Background(), databaseURL)
	if err != nil {
		t.Fatalf("harness: ledger: %v", err)
	}
	t.Logf("ledger: %s", s)
	const shown = 20
	for i, id := range s.Lost {
		if i == shown {
			t.Errorf("ledger: … and %d more lost", len(s.Lost)-shown)
			break
		}
		t.Errorf("ledger: %s accepted (scheduled %s) but neither delivered nor in the database: lost", id, l.scheduled(id).Format(time.RFC3339Nano))
	}
	for i, p := range s.Problems {
		if i == shown {
			t.Errorf("ledger: … and %d more problems", len(s.Problems)-shown)
			break
		}
		t.Errorf("ledger: %s", p)
	}
	return s
}

// String sums the summary up in one line.
func (s LedgerSummary) String() string {
	return fmt.Sprintf("%d accepted: %d delivered once and on time, %d waiting in the database, %d lost, %d other problems; %d deliveries of ids never seen accepted",
		s.Accepted, s.Delivered, s.Waiting, len(s.Lost), len(s.Problems), s.Strangers)
}

func (l *Ledger) scheduled(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted[id]
}

// Summary is Check without t: it compares the ledger with the database and
// returns what it found, failing nothing; an error means the database could
// not be read. A test that expects losses (a crash in memory mode) reads
// Lost and fails on Problems.
func (l *Ledger) Summary(ctx context.Context, databaseURL string) (LedgerSummary, error) {
	return l.check(ctx, databaseURL)
}

type row struct {
	status      string
	scheduledAt time.Time
	attempts    int
}

func (l *Ledger) check(ctx context.Context, databaseURL string) (LedgerSummary, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LedgerSummary{Accepted: len(l.accepted), Strangers: l.strangers}
	rows, err := lookup(ctx, databaseURL, l.accepted)
	if err != nil {
		return s, err
	}
	ids := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// The database keeps microseconds; the API may show fewer digits.
	const slack = time.Millisecond
	for _, id := range ids {
		at := l.accepted[id]
		ds := l.deliveries[id]
		r, inDB := rows[id]
		switch {
		case len(ds) > 1:
			s.Problems = append(s.Problems, fmt.Sprintf("%s delivered %d times: %+v", id, len(ds), ds))
		case len(ds) == 1:
			d := ds[0]
			early := d.ReceivedAt.Before(at.Add(-slack)) || (!d.AcquiredAt.IsZero() && d.AcquiredAt.Before(at.Add(-slack)))
			switch {
			case early:
				s.Problems = append(s.Problems, fmt.Sprintf("%s delivered before its time: scheduled %s, acquired %s, received %s",
					id, at.Format(time.RFC3339Nano), d.AcquiredAt.Format(time.RFC3339Nano), d.ReceivedAt.Format(time.RFC3339Nano)))
			case inDB:
				s.Problems = append(s.Problems, fmt.Sprintf("%s delivered and acked, yet in the database again (%s, attempts %d): a replay or a lost ack",
					id, r.status, r.attempts))
			default:
				s.Delivered++
			}
		case !inDB:
			s.Lost = append(s.Lost, id)
		case r.status != "PENDING" && r.status != "READY":
			s.Problems = append(s.Problems, fmt.Sprintf("%s not delivered to the ledger but %s in the database (attempts %d)", id, r.status, r.attempts))
		case !at.IsZero() && (r.scheduledAt.Sub(at) > slack || at.Sub(r.scheduledAt) > slack):
			s.Problems = append(s.Problems, fmt.Sprintf("%s waits with schedule %s, not the %s it was accepted with",
				id, r.scheduledAt.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano)))
		default:
			s.Waiting++
		}
	}
	return s, nil
}

// lookup reads the rows of the given ids from the messages table.
func lookup(ctx context.Context, databaseURL string, ids map[string]time.Time) (map[string]row, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	all := make([]string, 0, len(ids))
	for id := range ids {
		all = append(all, id)
	}
	out := map[string]row{}
	for len(all) > 0 {
		chunk := all[:min(len(all), 10_000)]
		all = all[len(chunk):]
		rs, err := conn.Query(ctx, `SELECT id::text, status, scheduled_at, attempts FROM messages WHERE id = ANY($1::uuid[])`, chunk)
		if err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		for rs.Next() {
			var id string
			var r row
			if err := rs.Scan(&id, &r.status, &r.scheduledAt, &r.attempts); err != nil {
				rs.Close()
				return nil, err
			}
			out[id] = r
		}
		if err := rs.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
