// Package store holds SMQ's domain types and the interfaces that its storage
// layers implement: the database (Store, in store/postgres) and the node-local
// buffer in front of it (Buffer, in store/buffer).
//
// A message's life, in store terms:
//
//	Buffer.Append ─flush─> MessageInsertMany: PENDING (or READY when already due)
//	MessagePromote:  PENDING ──(due)──> READY
//	MessagePoll:     READY ──> ACQUIRED (lease token, leased_until, attempts+1)
//	MessageAck:      ACQUIRED ──> deleted
//	MessageNack / MessageRecover: ACQUIRED ──> PENDING at now+backoff,
//	                 or, when attempts reached max_attempts, READY on "<channel>.DLQ"
package store

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
)

// Errors every implementation returns (wrapped or not) so that callers can
// map them with errors.Is.
var (
	// ErrNotFound means no message (or node) has the given id.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the message is in a state that forbids the change,
	// such as rescheduling a message a consumer holds.
	ErrConflict = errors.New("conflict")
	// ErrStaleLease means a receipt does not name the current lease of its
	// message: the lease expired and the message moved on, or was acked.
	ErrStaleLease = errors.New("stale lease")
	// ErrBufferFull means the buffer is at its configured capacity; the
	// caller should retry later.
	ErrBufferFull = errors.New("buffer full")
	// ErrStorageFull means the buffer's disk has no room left.
	ErrStorageFull = errors.New("buffer storage full")
	// ErrUnavailable means the database cannot be reached.
	ErrUnavailable = errors.New("database unavailable")
	// ErrBufferFailed means the buffer's write-ahead log failed to sync a
	// write: what that write holds may or may not survive a restart, and
	// the buffer takes no more writes until the node restarts and replays
	// it.
	ErrBufferFailed = errors.New("buffer failed")
)

// Status is where a message stands in the database.
type Status string

// The statuses a message moves through.
const (
	StatusPending  Status = "PENDING"
	StatusReady    Status = "READY"
	StatusAcquired Status = "ACQUIRED"
)

// DLQSuffix ends the name of every dead-letter channel: the messages of
// channel "billing" that run out of attempts move to "billing.DLQ".
const DLQSuffix = ".DLQ"

// channelPattern is what a channel name may be.
var channelPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// ValidChannel reports whether name is a well-formed channel name:
// 1 to 128 of the characters A–Z, a–z, 0–9, '.', '_' and '-'.
func ValidChannel(name string) bool { return channelPattern.MatchString(name) }

// DLQChannel returns the dead-letter channel of channel. A dead-letter
// channel is its own dead-letter channel: messages never move twice.
func DLQChannel(channel string) string {
	if IsDLQ(channel) {
		return channel
	}
	return channel + DLQSuffix
}

// IsDLQ reports whether channel is a dead-letter channel.
func IsDLQ(channel string) bool {
	return len(channel) > len(DLQSuffix) && channel[len(channel)-len(DLQSuffix):] == DLQSuffix
}

// Message is one scheduled message.
type Message struct {
	// ID is made at ingest and never changes.
	ID uuid.UUID
	// Channel is the queue the message is delivered on.
	Channel string
	// Payload is the message body, a JSON value, stored as sent.
	Payload []byte
	// Status is where the message stands; messages still in a node's buffer
	// are PENDING.
	Status Status
	// ScheduledAt is when the message becomes deliverable.
	ScheduledAt time.Time
	// Attempts counts the deliveries so far, the current one included.
	Attempts int
	// MaxAttempts is how many deliveries are tried before the message moves
	// to the dead-letter channel.
	MaxAttempts int
	// LeaseToken names the current lease while the message is ACQUIRED.
	LeaseToken uuid.UUID
	// LeasedUntil is when the current lease expires.
	LeasedUntil time.Time
	// AcquiredAt is when the current lease was taken.
	AcquiredAt time.Time
	// CreatedAt is when the message was accepted.
	CreatedAt time.Time
	// UpdatedAt is when the message last changed.
	UpdatedAt time.Time
	// Region is the region whose scheduler and janitor own the message.
	Region string
	// DedupKey, when set, is unique within the channel.
	DedupKey string
	// OriginalChannel is the channel a dead-lettered message came from.
	OriginalChannel string
	// LastError is the reason given by the last nack, or the lease expiry.
	LastError string
}

// Receipt names one lease of one message. Consumers get it from a poll and
// hand it back to ack, nack or extend that lease.
type Receipt struct {
	ID    uuid.UUID
	Token uuid.UUID
}

// String encodes the receipt as 43 URL-safe base64 characters.
func (r Receipt) String() string {
	var b [32]byte
	copy(b[:16], r.ID[:])
	copy(b[16:], r.Token[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseReceipt decodes a receipt made by Receipt.String.
func ParseReceipt(s string) (Receipt, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return Receipt{}, fmt.Errorf("malformed receipt %q", s)
	}
	var r Receipt
	copy(r.ID[:], b[:16])
	copy(r.Token[:], b[16:])
	return r, nil
}

// Node is one SMQ process, as it registers itself.
type Node struct {
	ID            string
	Region        string
	Version       string
	StartedAt     time.Time
	LastHeartbeat time.Time
	// Status is "active", or "stale" once the janitor saw its heartbeat stop.
	Status string
}

// Node statuses.
const (
	NodeActive = "active"
	NodeStale  = "stale"
)

// Backoff is the retry delay policy: attempt n (1-based) waits
// min(Cap, Base·Factor^(n-1)), with full jitter over its upper half.
type Backoff struct {
	Base   time.Duration
	Factor float64
	Cap    time.Duration
}

// WithDefaults fills unset fields with the defaults: 1 s, ×2, capped at 1 h.
func (b Backoff) WithDefaults() Backoff {
	b.Base = cmp.Or(b.Base, time.Second)
	b.Factor = cmp.Or(b.Factor, 2)
	b.Cap = cmp.Or(b.Cap, time.Hour)
	return b
}

// MessageInsertManyParams are the messages to insert and, for a buffer
// flush, the watermark to record in the same transaction.
type MessageInsertManyParams struct {
	Messages []*Message
	// Node and Seq, when Node is set, record that this node's buffer is in
	// the database up to sequence Seq (see FlushMark).
	Node string
	Seq  uint64
	// Seqs, required with Node, holds each message's sequence in the
	// node's buffer. A message at or below the node's flush mark is not
	// inserted: the database had it once, and may since have delivered and
	// deleted it, so inserting it again would deliver it twice. The mark is
	// read and locked in the insert's own transaction, so a flush retried
	// while an earlier attempt's commit is still on its way (the client
	// gave up on it, the database did not) waits for that commit and skips
	// what it wrote. It takes a node's flushes to commit in sequence order,
	// as they do: a buffer has one batch in flight at a time.
	Seqs []uint64
}

// MessageInsertManyResult tells what an insert did with each message.
type MessageInsertManyResult struct {
	// Existing maps the index of a message whose dedup key was taken to the
	// id of the message that holds it. Those messages were not inserted.
	Existing map[int]uuid.UUID
	// Inserted counts the rows written.
	Inserted int
}

// MessageUpdateParams reschedules a message or replaces its payload.
type MessageUpdateParams struct {
	ID          uuid.UUID
	ScheduledAt *time.Time
	Payload     []byte
}

// MessagePollParams asks for up to Max ready messages of Channel.
type MessagePollParams struct {
	Channel string
	Max     int
	// Visibility is how long the lease lasts.
	Visibility time.Duration
	// Region is the poller's region, served first.
	Region string
	// Subsidize fills what the local region cannot with other regions'
	// messages. Other regions are also served when the local one has none.
	Subsidize bool
}

// MessageAckParams names messages by id (whatever lease is current) or by
// receipt (strict: only the current lease).
type MessageAckParams struct {
	IDs      []uuid.UUID
	Receipts []Receipt
}

// Counts is how many messages an ack or a nack changed, by the channel
// they were polled from (a dead-lettered message counts under its original
// channel).
type Counts map[string]int

// Total is the sum over every channel.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// MessageNackParams returns leased messages for a retry.
type MessageNackParams struct {
	IDs      []uuid.UUID
	Receipts []Receipt
	// Delay, when set, replaces the backoff.
	Delay  *time.Duration
	Reason string
	// Backoff computes the delay when Delay is nil.
	Backoff Backoff
}

// MessageExtendParams extends leases to now+Visibility.
type MessageExtendParams struct {
	Receipts   []Receipt
	Visibility time.Duration
}

// MessagePromoteParams bounds one promotion pass.
type MessagePromoteParams struct {
	Region string
	Limit  int
}

// Promoted is what one promotion pass did.
type Promoted struct {
	// Count is how many messages became READY.
	Count int
	// Lateness holds, for each promoted message, how long after its
	// scheduled time it became ready.
	Lateness []time.Duration
	// NextDue is the earliest scheduled time still PENDING in the region,
	// zero when there is none. It is only read when Count < Limit.
	NextDue time.Time
}

// MessageRecoverParams bounds one pass over expired leases.
type MessageRecoverParams struct {
	Region  string
	Limit   int
	Backoff Backoff
}

// Recovered is what one recovery pass did.
type Recovered struct {
	// Retried counts expired leases put back for a retry.
	Retried int
	// DeadLettered counts messages moved to their dead-letter channel.
	DeadLettered int
}

// ChannelStats counts a channel's messages.
type ChannelStats struct {
	Channel  string
	ByStatus map[Status]int64
	// OldestDue is the earliest scheduled time of a READY message, zero when
	// none is waiting.
	OldestDue time.Time
	// DueByHour[i] counts PENDING messages due in hour i from now, i < 24.
	DueByHour []int64
}

// Store is the database boundary. Every SQL statement of SMQ lives behind
// it. Errors are ErrNotFound, ErrConflict, ErrStaleLease or ErrUnavailable
// where those apply, wrapped; others are the database's own.
type Store interface {
	// MessageInsertMany inserts messages in one round trip. A message whose
	// id exists already is skipped (so replaying a flush inserts nothing
	// twice); one whose (channel, dedup key) is taken is reported in
	// Existing. Messages already due are inserted READY.
	MessageInsertMany(ctx context.Context, p *MessageInsertManyParams) (*MessageInsertManyResult, error)
	// MessageGet returns one message, or ErrNotFound.
	MessageGet(ctx context.Context, id uuid.UUID) (*Message, error)
	// MessageDelete deletes a message in any status, or returns ErrNotFound.
	MessageDelete(ctx context.Context, id uuid.UUID) error
	// MessageUpdate reschedules a message or replaces its payload while no
	// consumer holds it (ErrConflict otherwise). A rescheduled message is
	// PENDING again, or READY if the new time has come.
	MessageUpdate(ctx context.Context, p *MessageUpdateParams) (*Message, error)
	// MessagePoll leases up to Max READY messages, earliest due first, and
	// when there are fewer, due PENDING messages of the local region that
	// the scheduler has not promoted yet.
	MessagePoll(ctx context.Context, p *MessagePollParams) ([]*Message, error)
	// MessageAck deletes acquired messages. With receipts it is all or
	// nothing: if any receipt is stale it returns ErrStaleLease and changes
	// nothing. With ids it acks those currently acquired and counts them.
	MessageAck(ctx context.Context, p *MessageAckParams) (Counts, error)
	// MessageNack puts acquired messages back for a retry (or into the
	// dead-letter channel), with the same rules as MessageAck.
	MessageNack(ctx context.Context, p *MessageNackParams) (Counts, error)
	// MessageExtend extends current leases; ErrStaleLease if any is not.
	MessageExtend(ctx context.Context, p *MessageExtendParams) (int, error)
	// MessagePromote makes up to Limit due PENDING messages of a region
	// READY and wakes their channels' long polls.
	MessagePromote(ctx context.Context, p *MessagePromoteParams) (*Promoted, error)
	// MessageNextDue returns the earliest scheduled time of the region's
	// PENDING messages, zero when there is none.
	MessageNextDue(ctx context.Context, region string) (time.Time, error)
	// MessageRecover puts up to Limit expired leases of a region back for a
	// retry, or dead-letters them when out of attempts.
	MessageRecover(ctx context.Context, p *MessageRecoverParams) (*Recovered, error)
	// MessageRegions lists the regions that have PENDING or ACQUIRED
	// messages: the regions some scheduler and janitor must serve.
	MessageRegions(ctx context.Context) ([]string, error)
	// ChannelList lists channels that hold messages, by name.
	ChannelList(ctx context.Context, limit, offset int) ([]string, error)
	// ChannelStats counts one channel's messages.
	ChannelStats(ctx context.Context, channel string) (*ChannelStats, error)
	// FlushMark returns the sequence up to which node's buffer is in the
	// database, 0 if none, once no flush of node is in flight: it waits for
	// one to commit or roll back.
	FlushMark(ctx context.Context, node string) (uint64, error)
	// NodeHeartbeat registers a node or refreshes its heartbeat, and marks
	// it active.
	NodeHeartbeat(ctx context.Context, n *Node) error
	// NodeList lists nodes by id.
	NodeList(ctx context.Context, limit, offset int) ([]*Node, error)
	// NodeMarkStale marks stale the active nodes whose last heartbeat is
	// older than olderThan, and returns them.
	NodeMarkStale(ctx context.Context, olderThan time.Duration) ([]*Node, error)
	// NodeDelete deregisters a node.
	NodeDelete(ctx context.Context, id string) error
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
}

// Notifier wakes waiters when something they wait for may have happened:
// messages became ready on a channel, or messages with an earlier due time
// reached a region. A wake-up is a hint: the waiter checks the database.
type Notifier interface {
	// Subscribe returns a channel that receives a value after each wake-up
	// of topic (several wake-ups may merge into one), and a func that ends
	// the subscription.
	Subscribe(topic string) (<-chan struct{}, func())
}

// ReadyTopic is the Notifier topic woken when messages of channel become
// ready.
func ReadyTopic(channel string) string { return "ready/" + channel }

// DueTopic is the Notifier topic woken when messages arrive in region's
// PENDING set (a flush or a reschedule), so its scheduler re-reads the next
// due time.
func DueTopic(region string) string { return "due/" + region }
