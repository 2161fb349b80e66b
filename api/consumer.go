package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// Re-check intervals of a long poll: wake-ups are hints that can be lost
// (a reconnecting listener), so a waiting poll also looks on its own.
const (
	recheckNotified = 5 * time.Second
	recheckPolling  = 500 * time.Millisecond
)

// Pagination is a page of a list.
type Pagination struct {
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
	Count  int `json:"count" doc:"Items on this page."`
}

type listChannelsInput struct {
	Limit  int `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Channels per page."`
	Offset int `query:"offset" minimum:"0" default:"0"`
}

type listChannelsOutput struct {
	Body struct {
		Channels   []string   `json:"channels" doc:"Channels that hold messages, by name."`
		Pagination Pagination `json:"pagination"`
	}
}

type pollInput struct {
	Channel           string `path:"channel" pattern:"^[A-Za-z0-9._-]{1,128}(\\.DLQ)?$" doc:"The channel to poll: a channel's name, or that name and .DLQ for its dead-letter channel." example:"billing"`
	Max               int    `query:"max" minimum:"1" maximum:"10000" default:"1000" doc:"Most messages to lease."`
	VisibilityTimeout int    `query:"visibility_timeout" minimum:"1" maximum:"43200" default:"30" doc:"Lease length in seconds (1 s to 12 h)."`
	Wait              int    `query:"wait" minimum:"0" maximum:"20" default:"0" doc:"Long poll: seconds to wait for a message when none is ready (0 to 20)."`
	Subsidize         bool   `query:"subsidize" default:"false" doc:"Fill what this node's region lacks with other regions' messages."`
}

// PolledMessage is one leased message.
type PolledMessage struct {
	ID              uuid.UUID       `json:"id" format:"uuid"`
	Channel         string          `json:"channel"`
	Payload         json.RawMessage `json:"payload"`
	ScheduledAt     time.Time       `json:"scheduled_at"`
	Status          string          `json:"status" enum:"ACQUIRED"`
	AcquiredAt      time.Time       `json:"acquired_at"`
	RetryCount      int             `json:"retry_count" doc:"attempts - 1."`
	Attempts        int             `json:"attempts" doc:"Deliveries so far, this one included."`
	MaxAttempts     int             `json:"max_attempts"`
	CreatedAt       time.Time       `json:"created_at"`
	LeasedUntil     time.Time       `json:"leased_until"`
	Receipt         string          `json:"receipt" doc:"Names this lease: ack, nack or extend with it to act only while the lease is yours."`
	OriginalChannel string          `json:"original_channel,omitempty" doc:"For a dead-lettered message, the channel it came from."`
	LastError       string          `json:"last_error,omitempty"`
	UpdatedAt       *time.Time      `json:"updated_at,omitempty"`
}

type pollOutput struct {
	Body PollOutputBody
}

// PollOutputBody is a poll's answer. It is named as Huma named it when it
// was unnamed, so the OpenAPI document and the generated client keep it.
type PollOutputBody struct {
	Messages []PolledMessage `json:"messages"`
}

// leaseBody names leased messages by id or by receipt.
type leaseBody struct {
	MessageIDs []string `json:"message_ids,omitempty" maxItems:"1000" doc:"Message ids (compatible form): acts on whatever lease is current."`
	Receipts   []string `json:"receipts,omitempty" maxItems:"1000" doc:"Receipts from a poll (strict form): all or nothing, 409 if any lease is no longer current."`
}

type ackInput struct {
	RawBody []byte
	body    leaseBody // RawBody, decoded by Resolve
}

// Resolve decodes and validates the body (see readBody).
func (in *ackInput) Resolve(ctx huma.Context) []error {
	return readBody(ctx, in.RawBody, &in.body, decodeLease)
}

// nackBody is the body of a nack. It is unnamed, as it was as the Body
// field of nackInput, so that its schema keeps the name Huma gave it:
// NackInputBody.
type nackBody = struct {
	MessageIDs []string `json:"message_ids,omitempty" maxItems:"1000" doc:"Message ids (compatible form): acts on whatever lease is current."`
	Receipts   []string `json:"receipts,omitempty" maxItems:"1000" doc:"Receipts from a poll (strict form): all or nothing, 409 if any lease is no longer current."`
	Delay      Duration `json:"delay,omitempty" doc:"Retry after this long instead of the exponential backoff (0 s to 10 years)."`
	Reason     string   `json:"reason,omitempty" maxLength:"4096" doc:"Why, kept as last_error."`
}

type nackInput struct {
	RawBody []byte
	body    nackBody // RawBody, decoded by Resolve
}

// Resolve decodes and validates the body (see readBody).
func (in *nackInput) Resolve(ctx huma.Context) []error {
	return readBody(ctx, in.RawBody, &in.body, decodeNack)
}

type extendInput struct {
	Body struct {
		Receipts          []string `json:"receipts" minItems:"1" maxItems:"1000"`
		VisibilityTimeout Duration `json:"visibility_timeout,omitempty" doc:"New lease length from now (1 s to 12 h). Defaults to 30 s."`
	}
}

type countOutput struct {
	Body struct {
		Success bool `json:"success"`
		Count   int  `json:"count" doc:"Messages affected."`
	}
}

type channelInput struct {
	Channel string `path:"channel" pattern:"^[A-Za-z0-9._-]{1,128}(\\.DLQ)?$" doc:"The channel: a channel's name, or that name and .DLQ for its dead-letter channel." example:"billing"`
}

type channelStatsOutput struct {
	Body struct {
		Channel   string           `json:"channel"`
		ByStatus  map[string]int64 `json:"by_status" doc:"Messages by status: PENDING, READY, ACQUIRED."`
		Total     int64            `json:"total"`
		OldestDue *time.Time       `json:"oldest_due,omitempty" doc:"Earliest scheduled time of a READY message; absent when none waits."`
		DueByHour []int64          `json:"due_by_hour" doc:"PENDING messages falling due in each of the next 24 hours."`
	}
}

func (s *server) registerConsumer(a huma.API) {
	huma.Register(a, huma.Operation{
		OperationID: "list-channels",
		Method:      http.MethodGet,
		Path:        "/v1/channels",
		Summary:     "List channels",
		Tags:        []string{"consumer"},
		Security:    needs(ScopeConsume),
		Errors:      []int{401, 403, 422, 503},
	}, s.listChannels)

	huma.Register(a, huma.Operation{
		OperationID: "poll-messages",
		Method:      http.MethodGet,
		Path:        "/v1/channels/{channel}/poll",
		Summary:     "Poll a channel",
		Description: "Leases up to max READY messages, earliest due first. With wait, answers as soon as a message becomes ready, or with none after wait seconds.",
		Tags:        []string{"consumer"},
		Security:    needs(ScopeConsume),
		Errors:      []int{401, 403, 422, 503},
	}, s.poll)

	registerWithBody[ackInput, countOutput, leaseBody](a, s.readTimeout, huma.Operation{
		OperationID: "ack-messages",
		Method:      http.MethodPost,
		Path:        "/v1/messages/ack",
		Summary:     "Acknowledge messages",
		Description: "Deletes leased messages: give message_ids or receipts (1 to 1000), not both.",
		Tags:        []string{"consumer"},
		Security:    needs(ScopeConsume),
		Errors:      []int{400, 401, 403, 409, 422, 503},
	}, s.ack)

	registerWithBody[nackInput, countOutput, nackBody](a, s.readTimeout, huma.Operation{
		OperationID: "nack-messages",
		Method:      http.MethodPost,
		Path:        "/v1/messages/nack",
		Summary:     "Return messages for a retry",
		Description: "Puts leased messages back, due after delay or an exponential backoff; a message out of attempts moves to <channel>.DLQ. Give message_ids or receipts (1 to 1000), not both.",
		Tags:        []string{"consumer"},
		Security:    needs(ScopeConsume),
		Errors:      []int{400, 401, 403, 409, 422, 503},
	}, s.nack)

	huma.Register(a, huma.Operation{
		OperationID: "extend-leases",
		Method:      http.MethodPost,
		Path:        "/v1/messages/extend",
		Summary:     "Extend leases",
		Description: "Extends leases to now + visibility_timeout; all or nothing, 409 if any receipt is no longer current.",
		Tags:        []string{"consumer"},
		Security:    needs(ScopeConsume),
		Errors:      []int{400, 401, 403, 409, 422, 503},
		// Zero (no server) is Huma's default; see registerWithBody.
		BodyReadTimeout: s.readTimeout,
	}, s.extend)

	huma.Register(a, huma.Operation{
		OperationID: "channel-stats",
		Method:      http.MethodGet,
		Path:        "/v1/channels/{channel}/stats",
		Summary:     "Channel statistics",
		Tags:        []string{"consumer"},
		Security:    needs(ScopeConsume),
		Errors:      []int{401, 403, 422, 503},
	}, s.channelStats)
}

func (s *server) listChannels(ctx context.Context, in *listChannelsInput) (*listChannelsOutput, error) {
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	names, err := s.d.Store.ChannelList(sctx, in.Limit, in.Offset)
	if err != nil {
		return nil, s.storeErr(ctx, err, "channels")
	}
	out := &listChannelsOutput{}
	out.Body.Channels = append([]string{}, names...)
	out.Body.Pagination = Pagination{Limit: in.Limit, Offset: in.Offset, Count: len(names)}
	return out, nil
}

func (s *server) poll(ctx context.Context, in *pollInput) (*pollOutput, error) {
	p := &store.MessagePollParams{
		Channel:    in.Channel,
		Max:        in.Max,
		Visibility: time.Duration(in.VisibilityTimeout) * time.Second,
		Region:     s.d.Region,
		Subsidize:  in.Subsidize,
	}
	s.metrics.polls.WithLabelValues(in.Channel).Inc()
	var (
		wake     <-chan struct{}
		deadline <-chan time.Time
		recheck  *time.Ticker
	)
	if in.Wait > 0 {
		// Subscribe before the first look, so that a message made ready
		// between that look and the wait still wakes us.
		interval := recheckPolling
		if s.d.Notifier != nil {
			ch, unsubscribe := s.d.Notifier.Subscribe(store.ReadyTopic(in.Channel))
			defer unsubscribe()
			wake = ch
			interval = recheckNotified
		}
		timer := time.NewTimer(time.Duration(in.Wait) * time.Second)
		defer timer.Stop()
		deadline = timer.C
		recheck = time.NewTicker(interval)
		defer recheck.Stop()
	}
	out := &pollOutput{}
	out.Body.Messages = []PolledMessage{}
	for {
		sctx, cancel := s.storeCtx(ctx)
		msgs, err := s.d.Store.MessagePoll(sctx, p)
		cancel()
		if err != nil {
			return nil, s.storeErr(ctx, err, "poll")
		}
		if len(msgs) > 0 || in.Wait == 0 {
			out.Body.Messages = slices.Grow(out.Body.Messages, len(msgs))
			for _, m := range msgs {
				out.Body.Messages = append(out.Body.Messages, polledMessage(m))
			}
			s.metrics.delivered.WithLabelValues(in.Channel).Add(float64(len(msgs)))
			return out, nil
		}
		select {
		case <-wake:
		case <-recheck.C:
		case <-deadline:
			return out, nil
		case <-s.d.Draining:
			return out, nil
		case <-ctx.Done():
			return out, nil
		}
	}
}

func polledMessage(m *store.Message) PolledMessage {
	return PolledMessage{
		ID:              m.ID,
		Channel:         m.Channel,
		Payload:         payloadJSON(m.Payload),
		ScheduledAt:     m.ScheduledAt.UTC(),
		Status:          string(m.Status),
		AcquiredAt:      m.AcquiredAt.UTC(),
		RetryCount:      max(m.Attempts-1, 0),
		Attempts:        m.Attempts,
		MaxAttempts:     m.MaxAttempts,
		CreatedAt:       m.CreatedAt.UTC(),
		LeasedUntil:     m.LeasedUntil.UTC(),
		Receipt:         store.Receipt{ID: m.ID, Token: m.LeaseToken}.String(),
		OriginalChannel: m.OriginalChannel,
		LastError:       m.LastError,
		UpdatedAt:       timePtr(m.UpdatedAt),
	}
}

// leases parses a lease body at location body.
func leases(b *leaseBody) ([]uuid.UUID, []store.Receipt, error) {
	var bad []*huma.ErrorDetail
	switch {
	case len(b.MessageIDs) > 0 && len(b.Receipts) > 0:
		return nil, nil, invalid(field("body", "give message_ids or receipts, not both", nil))
	case len(b.MessageIDs) == 0 && len(b.Receipts) == 0:
		return nil, nil, invalid(field("body", "give 1 to 1000 message_ids or receipts", nil))
	}
	var ids []uuid.UUID
	for i, raw := range b.MessageIDs {
		id, err := uuid.Parse(raw)
		if err != nil {
			bad = append(bad, field(fmt.Sprintf("body.message_ids[%d]", i), "not a UUID", raw))
		}
		ids = append(ids, id)
	}
	receipts, badReceipts := parseReceipts("body.receipts", b.Receipts)
	bad = append(bad, badReceipts...)
	if len(bad) > 0 {
		return nil, nil, invalid(bad...)
	}
	return ids, receipts, nil
}

func parseReceipts(location string, raws []string) ([]store.Receipt, []*huma.ErrorDetail) {
	var bad []*huma.ErrorDetail
	var receipts []store.Receipt
	for i, raw := range raws {
		r, err := store.ParseReceipt(raw)
		if err != nil {
			bad = append(bad, field(fmt.Sprintf("%s[%d]", location, i), "not a receipt from a poll", raw))
		}
		receipts = append(receipts, r)
	}
	return receipts, bad
}

func counted(n int) *countOutput {
	out := &countOutput{}
	out.Body.Success = true
	out.Body.Count = n
	return out
}

func (s *server) ack(ctx context.Context, in *ackInput) (*countOutput, error) {
	ids, receipts, err := leases(&in.body)
	if err != nil {
		return nil, err
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	counts, err := s.d.Store.MessageAck(sctx, &store.MessageAckParams{IDs: ids, Receipts: receipts})
	if err != nil {
		return nil, s.storeErr(ctx, err, "messages")
	}
	count(s.metrics.acked, counts)
	return counted(counts.Total()), nil
}

func (s *server) nack(ctx context.Context, in *nackInput) (*countOutput, error) {
	ids, receipts, err := leases(&leaseBody{MessageIDs: in.body.MessageIDs, Receipts: in.body.Receipts})
	if err != nil {
		return nil, err
	}
	if strings.ContainsRune(in.body.Reason, 0) {
		return nil, invalid(field("body.reason", errNUL, in.body.Reason))
	}
	p := &store.MessageNackParams{IDs: ids, Receipts: receipts, Reason: in.body.Reason, Backoff: s.d.Backoff}
	if in.body.Delay.set() {
		d, err := in.body.Delay.duration(0, MaxAhead)
		if err != nil {
			return nil, invalid(field("body.delay", err.Error(), in.body.Delay.raw))
		}
		p.Delay = &d
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	counts, err := s.d.Store.MessageNack(sctx, p)
	if err != nil {
		return nil, s.storeErr(ctx, err, "messages")
	}
	count(s.metrics.nacked, counts)
	return counted(counts.Total()), nil
}

func (s *server) extend(ctx context.Context, in *extendInput) (*countOutput, error) {
	if len(in.Body.Receipts) == 0 {
		// minItems does not catch "receipts": null.
		return nil, invalid(field("body.receipts", "give 1 to 1000 receipts", nil))
	}
	receipts, bad := parseReceipts("body.receipts", in.Body.Receipts)
	visibility := 30 * time.Second
	if in.Body.VisibilityTimeout.set() {
		d, err := in.Body.VisibilityTimeout.duration(time.Second, MaxVisibility)
		if err != nil {
			bad = append(bad, field("body.visibility_timeout", err.Error(), in.Body.VisibilityTimeout.raw))
		}
		visibility = d
	}
	if len(bad) > 0 {
		return nil, invalid(bad...)
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	n, err := s.d.Store.MessageExtend(sctx, &store.MessageExtendParams{Receipts: receipts, Visibility: visibility})
	if err != nil {
		return nil, s.storeErr(ctx, err, "messages")
	}
	return counted(n), nil
}

func (s *server) channelStats(ctx context.Context, in *channelInput) (*channelStatsOutput, error) {
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	st, err := s.d.Store.ChannelStats(sctx, in.Channel)
	if errors.Is(err, store.ErrNotFound) {
		st, err = &store.ChannelStats{Channel: in.Channel}, nil
	}
	if err != nil {
		return nil, s.storeErr(ctx, err, "channel "+in.Channel)
	}
	out := &channelStatsOutput{}
	out.Body.Channel = in.Channel
	out.Body.ByStatus = map[string]int64{}
	for _, status := range []store.Status{store.StatusPending, store.StatusReady, store.StatusAcquired} {
		out.Body.ByStatus[string(status)] = st.ByStatus[status]
		out.Body.Total += st.ByStatus[status]
	}
	out.Body.OldestDue = timePtr(st.OldestDue)
	out.Body.DueByHour = make([]int64, 24)
	copy(out.Body.DueByHour, st.DueByHour)
	return out, nil
}
