package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// Durability values of a create.
const (
	durabilityBuffered  = "buffered"
	durabilityCommitted = "committed"
)

// Messages of free-text checks: payloads are delivered as JSON, which must
// be UTF-8, and PostgreSQL's text columns refuse NUL characters.
const (
	errNotUTF8 = "is not valid UTF-8 (JSON text must be UTF-8)"
	errNUL     = "must not contain NUL (\\u0000) characters"
)

// bodyOverhead is room for a create's other fields around its payload.
const bodyOverhead = 64 << 10

// MessageIn is one message to create.
type MessageIn struct {
	Channel     string          `json:"channel" minLength:"1" maxLength:"128" pattern:"^[A-Za-z0-9._-]{1,128}$" doc:"The channel to deliver on." example:"billing"`
	Payload     json.RawMessage `json:"payload" doc:"The message body: any JSON value, delivered as sent."`
	ScheduledAt Schedule        `json:"scheduled_at,omitempty"`
	Delay       Duration        `json:"delay,omitempty" doc:"Deliver after this long instead of at scheduled_at (0 s to 10 years)."`
	MaxAttempts int             `json:"max_attempts,omitempty" minimum:"1" maximum:"1000" default:"10" doc:"Deliveries tried before the message moves to <channel>.DLQ."`
	DedupKey    string          `json:"dedup_key,omitempty" maxLength:"256" doc:"Unique within the channel: a second create with the same key creates nothing and returns the first message's id (200)."`
}

// CreatedMessage answers a create.
type CreatedMessage struct {
	MessageID   uuid.UUID `json:"message_id" format:"uuid" doc:"The message's id, made at ingest."`
	Channel     string    `json:"channel"`
	ScheduledAt time.Time `json:"scheduled_at" doc:"When the message becomes deliverable."`
	CreatedAt   time.Time `json:"created_at"`
}

type createMessageInput struct {
	Durability     string `query:"durability" enum:"buffered,committed" default:"buffered" doc:"committed: answer once the message is in the database, not only in the node's write-ahead log."`
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"256" doc:"Same as dedup_key."`
	RawBody        []byte
	body           MessageIn // RawBody, decoded by Resolve
}

// Resolve decodes and validates the body (see readBody).
func (in *createMessageInput) Resolve(ctx huma.Context) []error {
	return readBody(ctx, in.RawBody, &in.body, decodeMessage)
}

type createMessageOutput struct {
	Status int
	Body   CreatedMessage
}

// BatchResult is the outcome of one item of a batch create.
type BatchResult struct {
	MessageID   uuid.UUID  `json:"message_id" format:"uuid"`
	Channel     string     `json:"channel"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty" doc:"Absent for an existing message."`
	CreatedAt   *time.Time `json:"created_at,omitempty" doc:"Absent for an existing message."`
	Status      string     `json:"status" enum:"created,existing" doc:"existing: the dedup key was taken; message_id is the first message's."`
}

type createMessagesInput struct {
	Durability string `query:"durability" enum:"buffered,committed" default:"buffered" doc:"committed: answer once the messages are in the database."`
	RawBody    []byte
	body       createMessagesBody // RawBody, decoded by Resolve
}

// Resolve decodes and validates the body (see readBody).
func (in *createMessagesInput) Resolve(ctx huma.Context) []error {
	return readBody(ctx, in.RawBody, &in.body, decodeBatch)
}

// BatchResults answers a batch create.
type BatchResults struct {
	Results []BatchResult `json:"results" doc:"One result per message, in order."`
}

type createMessagesOutput struct {
	Status int
	Body   BatchResults
}

// MessageOut is a message as GET, PATCH and poll show it.
type MessageOut struct {
	ID              uuid.UUID       `json:"id" format:"uuid"`
	MessageID       uuid.UUID       `json:"message_id" format:"uuid" doc:"Same as id."`
	Channel         string          `json:"channel"`
	Payload         json.RawMessage `json:"payload"`
	Status          string          `json:"status" enum:"PENDING,READY,ACQUIRED"`
	ScheduledAt     time.Time       `json:"scheduled_at"`
	Attempts        int             `json:"attempts" doc:"Deliveries so far, the current one included."`
	MaxAttempts     int             `json:"max_attempts"`
	RetryCount      int             `json:"retry_count" doc:"attempts - 1, at least 0."`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       *time.Time      `json:"updated_at,omitempty"`
	AcquiredAt      *time.Time      `json:"acquired_at,omitempty"`
	LeasedUntil     *time.Time      `json:"leased_until,omitempty"`
	OriginalChannel string          `json:"original_channel,omitempty" doc:"For a dead-lettered message, the channel it came from."`
	LastError       string          `json:"last_error,omitempty" doc:"The last nack's reason, or the lease expiry."`
	Buffered        bool            `json:"buffered,omitempty" doc:"true while the message is still in this node's buffer, not yet in the database."`
	Region          string          `json:"region,omitempty" doc:"The region whose scheduler and janitor own the message: the region of the node that accepted it."`
}

type messageIDInput struct {
	ID string `path:"id" format:"uuid" doc:"The message's id." example:"01920000-0000-7000-8000-000000000000"`
}

type messageOutput struct {
	Body MessageOut
}

type updateMessageInput struct {
	ID   string `path:"id" format:"uuid" doc:"The message's id."`
	Body struct {
		ScheduledAt Schedule        `json:"scheduled_at,omitempty"`
		Delay       Duration        `json:"delay,omitempty" doc:"Deliver this long from now instead of at scheduled_at."`
		Payload     json.RawMessage `json:"payload,omitempty" doc:"Replaces the payload."`
	}
}

type deleteMessageOutput struct {
	Body struct {
		MessageID uuid.UUID `json:"message_id" format:"uuid"`
		DeletedAt time.Time `json:"deleted_at"`
	}
}

func (s *server) registerProducer(a huma.API) {
	schemaOf := func(t reflect.Type) map[string]*huma.MediaType {
		return map[string]*huma.MediaType{"application/json": {Schema: a.OpenAPI().Components.Schemas.Schema(t, true, "")}}
	}
	registerWithBody[createMessageInput, createMessageOutput, MessageIn](a, s.readTimeout, huma.Operation{
		OperationID:   "create-message",
		Method:        http.MethodPost,
		Path:          "/v1/message",
		Summary:       "Create a message",
		Description:   "Schedules one message. 201 when created; 200 with the first message's id when its dedup key (or Idempotency-Key) was already used on the channel.",
		Tags:          []string{"producer"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  s.d.MaxPayload + bodyOverhead,
		Security:      needs(ScopeProduce),
		Errors:        []int{400, 401, 403, 413, 422, 429, 503, 507},
		Responses: map[string]*huma.Response{"200": {
			Description: "The dedup key was already used on the channel: nothing was created, and message_id is the first message's.",
			Content:     schemaOf(reflect.TypeFor[CreatedMessage]()),
		}},
	}, s.createMessage)

	registerWithBody[createMessagesInput, createMessagesOutput, createMessagesBody](a, s.readTimeout, huma.Operation{
		OperationID:   "create-messages",
		Method:        http.MethodPost,
		Path:          "/v1/messages",
		Summary:       "Create messages in a batch",
		Description:   "Schedules 1 to 1000 messages, with one result per message.",
		Tags:          []string{"producer"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  max(s.d.MaxBatchBytes, s.d.MaxPayload+bodyOverhead),
		Security:      needs(ScopeProduce),
		Errors:        []int{400, 401, 403, 413, 422, 429, 503, 507},
		Responses: map[string]*huma.Response{"200": {
			Description: "Every message's dedup key was already used: nothing was created.",
			Content:     schemaOf(reflect.TypeFor[BatchResults]()),
		}},
	}, s.createMessages)

	huma.Register(a, huma.Operation{
		OperationID: "get-message",
		Method:      http.MethodGet,
		Path:        "/v1/message/{id}",
		Summary:     "Get a message",
		Tags:        []string{"producer"},
		Security:    needs(ScopeProduce, ScopeConsume),
		Errors:      []int{401, 403, 404, 422, 503},
	}, s.getMessage)

	huma.Register(a, huma.Operation{
		OperationID:  "update-message",
		Method:       http.MethodPatch,
		Path:         "/v1/message/{id}",
		Summary:      "Reschedule a message or replace its payload",
		Description:  "Changes scheduled_at (or delay) and/or the payload of a message no consumer holds; 409 once it is leased.",
		Tags:         []string{"producer"},
		MaxBodyBytes: s.d.MaxPayload + bodyOverhead,
		Security:     needs(ScopeProduce),
		Errors:       []int{400, 401, 403, 404, 409, 413, 422, 503},
		// Zero (no server) is Huma's default; see registerWithBody.
		BodyReadTimeout: s.readTimeout,
	}, s.updateMessage)

	huma.Register(a, huma.Operation{
		OperationID: "delete-message",
		Method:      http.MethodDelete,
		Path:        "/v1/message/{id}",
		Summary:     "Delete a message",
		Description: "Deletes a message in any state, whether still in the node's buffer or in the database.",
		Tags:        []string{"producer"},
		Security:    needs(ScopeProduce),
		Errors:      []int{401, 403, 404, 422, 503},
	}, s.deleteMessage)
}

// newMessage validates in and fills m, the message to store, all but its
// id. index is the message's place in a batch, or -1 for a single create:
// it names the fields in errors. It returns the field errors, or a 413
// error for the payload.
func (s *server) newMessage(m *store.Message, index int, in *MessageIn, headerKey string, now time.Time) ([]*huma.ErrorDetail, error) {
	loc := func(name string) string {
		if index < 0 {
			return "body." + name
		}
		return fmt.Sprintf("body.messages[%d].%s", index, name)
	}
	var bad []*huma.ErrorDetail
	if !validChannel(in.Channel) {
		bad = append(bad, field(loc("channel"), "must be 1 to 128 of A-Z a-z 0-9 . _ -", in.Channel))
	}
	if n := int64(len(in.Payload)); n > s.d.MaxPayload {
		return nil, huma.Error413RequestEntityTooLarge(
			fmt.Sprintf("%s is %d bytes, over the %d-byte limit", loc("payload"), n, s.d.MaxPayload))
	}
	if len(in.Payload) == 0 {
		bad = append(bad, field(loc("payload"), "is required", nil))
	} else if !utf8.Valid(in.Payload) {
		bad = append(bad, field(loc("payload"), errNotUTF8, nil))
	}
	if strings.ContainsRune(in.DedupKey, 0) {
		bad = append(bad, field(loc("dedup_key"), errNUL, in.DedupKey))
	}
	// The schema bounds these too, but Huma checks the field of the exact
	// name, and encoding/json may keep another: {"max_attempts":5,
	// "MAX_ATTEMPTS":5000}.
	if in.MaxAttempts < 0 || in.MaxAttempts > 1000 {
		bad = append(bad, field(loc("max_attempts"), "must be 1 to 1000", in.MaxAttempts))
	}
	if utf8.RuneCountInString(in.DedupKey) > 256 {
		bad = append(bad, field(loc("dedup_key"), "must be at most 256 characters", in.DedupKey))
	}
	at := now
	switch {
	case in.ScheduledAt.set() && in.Delay.set():
		bad = append(bad, field(loc("delay"), "give scheduled_at or delay, not both", in.Delay.raw))
	case in.ScheduledAt.set():
		t, err := in.ScheduledAt.time(now)
		if err != nil {
			bad = append(bad, field(loc("scheduled_at"), err.Error(), in.ScheduledAt.raw))
		}
		at = t
	case in.Delay.set():
		d, err := in.Delay.duration(0, MaxAhead)
		if err != nil {
			bad = append(bad, field(loc("delay"), err.Error(), in.Delay.raw))
		}
		at = now.Add(d)
	}
	dedup := in.DedupKey
	if headerKey != "" {
		if dedup != "" && dedup != headerKey {
			bad = append(bad, field("header.Idempotency-Key", "differs from body.dedup_key", headerKey))
		}
		dedup = headerKey
	}
	maxAttempts := in.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = 10
	}
	if len(bad) > 0 {
		return bad, nil
	}
	*m = store.Message{
		Channel:     in.Channel,
		Payload:     in.Payload,
		Status:      store.StatusPending,
		ScheduledAt: at,
		MaxAttempts: maxAttempts,
		CreatedAt:   now,
		UpdatedAt:   now,
		Region:      s.d.Region,
		DedupKey:    dedup,
	}
	return nil, nil
}

// newIDs gives each of msgs a version 7 UUID, with one read of the
// system's randomness for all of them rather than one each.
func newIDs(msgs []*store.Message) error {
	random := make([]byte, 16*len(msgs))
	if _, err := rand.Read(random); err != nil {
		return fmt.Errorf("message ids: %w", err)
	}
	r := bytes.NewReader(random)
	for _, m := range msgs {
		id, err := uuid.NewV7FromReader(r)
		if err != nil {
			return fmt.Errorf("message id: %w", err)
		}
		m.ID = id
	}
	return nil
}

// buffered reports whether m goes to the buffer rather than straight to the
// database. Dedup keys always go to the database, so that they hold across
// nodes and across buffer and database.
func (s *server) buffered(m *store.Message, durability string) bool {
	return s.d.Buffer != nil && m.DedupKey == "" && durability != durabilityCommitted
}

// insert stores msgs: the buffered ones with one Buffer.Append, the others
// with one MessageInsertMany. It returns, by index into msgs, the messages
// that already existed under their dedup key.
func (s *server) insert(ctx context.Context, msgs []*store.Message, durability string) (map[int]uuid.UUID, error) {
	toBuffer, direct := msgs, []*store.Message(nil)
	var directIndex []int
	if n := s.countBuffered(msgs, durability); n < len(msgs) {
		toBuffer = make([]*store.Message, 0, n)
		direct = make([]*store.Message, 0, len(msgs)-n)
		directIndex = make([]int, 0, len(msgs)-n)
		for i, m := range msgs {
			if s.buffered(m, durability) {
				toBuffer = append(toBuffer, m)
			} else {
				direct = append(direct, m)
				directIndex = append(directIndex, i)
			}
		}
	}
	var existing map[int]uuid.UUID
	// The database first: if the append then fails, a retry of the request
	// finds the direct messages by their dedup keys and creates nothing
	// twice, whereas buffered messages have no key to be found by.
	if len(direct) > 0 {
		sctx, cancel := s.storeCtx(ctx)
		res, err := s.d.Store.MessageInsertMany(sctx, &store.MessageInsertManyParams{Messages: direct})
		cancel()
		if err != nil {
			return nil, err
		}
		for i, id := range res.Existing {
			if existing == nil {
				existing = map[int]uuid.UUID{}
			}
			existing[directIndex[i]] = id
		}
	}
	if len(toBuffer) > 0 {
		if err := s.d.Buffer.Append(ctx, toBuffer); err != nil {
			return nil, err
		}
	}
	// One counter update per run of messages on one channel: the messages
	// of a batch mostly share theirs.
	channel, n := "", 0
	for i, m := range msgs {
		if _, ok := existing[i]; ok {
			continue
		}
		if m.Channel != channel && n > 0 {
			s.metrics.created.WithLabelValues(channel).Add(float64(n))
			n = 0
		}
		channel = m.Channel
		n++
	}
	if n > 0 {
		s.metrics.created.WithLabelValues(channel).Add(float64(n))
	}
	return existing, nil
}

// countBuffered counts the messages of msgs that go to the buffer.
func (s *server) countBuffered(msgs []*store.Message, durability string) int {
	n := 0
	for _, m := range msgs {
		if s.buffered(m, durability) {
			n++
		}
	}
	return n
}

func (s *server) createMessage(ctx context.Context, in *createMessageInput) (*createMessageOutput, error) {
	now := s.now()
	m := &store.Message{}
	bad, err := s.newMessage(m, -1, &in.body, in.IdempotencyKey, now)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, invalid(bad...)
	}
	if m.ID, err = uuid.NewV7(); err != nil {
		return nil, fmt.Errorf("message id: %w", err)
	}
	existing, err := s.insert(ctx, []*store.Message{m}, in.Durability)
	if err != nil {
		return nil, s.storeErr(ctx, err, "message")
	}
	out := &createMessageOutput{Status: http.StatusCreated, Body: CreatedMessage{
		MessageID: m.ID, Channel: m.Channel, ScheduledAt: m.ScheduledAt, CreatedAt: m.CreatedAt,
	}}
	if id, ok := existing[0]; ok {
		out.Status = http.StatusOK
		out.Body.MessageID = id
		sctx, cancel := s.storeCtx(ctx)
		first, err := s.d.Store.MessageGet(sctx, id)
		cancel()
		switch {
		case err == nil:
			out.Body.ScheduledAt, out.Body.CreatedAt = first.ScheduledAt.UTC(), first.CreatedAt.UTC()
		case errors.Is(err, store.ErrNotFound):
			// Acked or deleted since; the id is still the answer.
		default:
			return nil, s.storeErr(ctx, err, "message")
		}
	}
	return out, nil
}

func (s *server) createMessages(ctx context.Context, in *createMessagesInput) (*createMessagesOutput, error) {
	if len(in.body.Messages) == 0 {
		// minItems does not catch "messages": null.
		return nil, invalid(field("body.messages", "give 1 to 1000 messages", nil))
	}
	now := s.now()
	// One allocation for all the messages.
	backing := make([]store.Message, len(in.body.Messages))
	msgs := make([]*store.Message, len(in.body.Messages))
	var bad []*huma.ErrorDetail
	for i := range in.body.Messages {
		msgs[i] = &backing[i]
		b, err := s.newMessage(msgs[i], i, &in.body.Messages[i], "", now)
		if err != nil {
			return nil, err
		}
		bad = append(bad, b...)
	}
	if len(bad) > 0 {
		return nil, invalid(bad...)
	}
	if err := newIDs(msgs); err != nil {
		return nil, err
	}
	existing, err := s.insert(ctx, msgs, in.Durability)
	if err != nil {
		return nil, s.storeErr(ctx, err, "messages")
	}
	out := &createMessagesOutput{Status: http.StatusOK}
	out.Body.Results = make([]BatchResult, len(msgs))
	for i, m := range msgs {
		if id, ok := existing[i]; ok {
			out.Body.Results[i] = BatchResult{MessageID: id, Channel: m.Channel, Status: "existing"}
			continue
		}
		out.Status = http.StatusCreated
		out.Body.Results[i] = BatchResult{MessageID: m.ID, Channel: m.Channel, ScheduledAt: &m.ScheduledAt, CreatedAt: &m.CreatedAt, Status: "created"}
	}
	return out, nil
}

// messageOut shows m.
func messageOut(m *store.Message, buffered bool) MessageOut {
	out := MessageOut{
		ID:              m.ID,
		MessageID:       m.ID,
		Channel:         m.Channel,
		Payload:         payloadJSON(m.Payload),
		Status:          string(m.Status),
		ScheduledAt:     m.ScheduledAt.UTC(),
		Attempts:        m.Attempts,
		MaxAttempts:     m.MaxAttempts,
		RetryCount:      max(m.Attempts-1, 0),
		CreatedAt:       m.CreatedAt.UTC(),
		UpdatedAt:       timePtr(m.UpdatedAt),
		OriginalChannel: m.OriginalChannel,
		LastError:       m.LastError,
		Buffered:        buffered,
		Region:          m.Region,
	}
	if out.Status == "" {
		out.Status = string(store.StatusPending)
	}
	if m.Status == store.StatusAcquired {
		out.AcquiredAt = timePtr(m.AcquiredAt)
		out.LeasedUntil = timePtr(m.LeasedUntil)
	}
	return out
}

// payloadJSON returns a stored payload as JSON (null when empty).
func payloadJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (s *server) getMessage(ctx context.Context, in *messageIDInput) (*messageOutput, error) {
	id := uuid.MustParse(in.ID)
	if s.d.Buffer != nil {
		if m, ok := s.d.Buffer.Get(id); ok {
			return &messageOutput{Body: messageOut(m, true)}, nil
		}
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	m, err := s.d.Store.MessageGet(sctx, id)
	if err != nil {
		return nil, s.storeErr(ctx, err, "message "+in.ID)
	}
	return &messageOutput{Body: messageOut(m, false)}, nil
}

func (s *server) updateMessage(ctx context.Context, in *updateMessageInput) (*messageOutput, error) {
	id := uuid.MustParse(in.ID)
	now := s.now()
	b := &in.Body
	var bad []*huma.ErrorDetail
	if n := int64(len(b.Payload)); n > s.d.MaxPayload {
		return nil, huma.Error413RequestEntityTooLarge(fmt.Sprintf("body.payload is %d bytes, over the %d-byte limit", n, s.d.MaxPayload))
	}
	if !utf8.Valid(b.Payload) {
		bad = append(bad, field("body.payload", errNotUTF8, nil))
	}
	p := &store.MessageUpdateParams{ID: id, Payload: b.Payload}
	switch {
	case b.ScheduledAt.set() && b.Delay.set():
		bad = append(bad, field("body.delay", "give scheduled_at or delay, not both", b.Delay.raw))
	case b.ScheduledAt.set():
		t, err := b.ScheduledAt.time(now)
		if err != nil {
			bad = append(bad, field("body.scheduled_at", err.Error(), b.ScheduledAt.raw))
		}
		p.ScheduledAt = &t
	case b.Delay.set():
		d, err := b.Delay.duration(0, MaxAhead)
		if err != nil {
			bad = append(bad, field("body.delay", err.Error(), b.Delay.raw))
		}
		t := now.Add(d)
		p.ScheduledAt = &t
	case len(b.Payload) == 0:
		bad = append(bad, field("body", "give scheduled_at, delay or payload", nil))
	}
	if len(bad) > 0 {
		return nil, invalid(bad...)
	}

	if s.d.Buffer != nil {
		m, ok, err := s.d.Buffer.Update(ctx, id, func(m *store.Message) {
			if p.ScheduledAt != nil {
				m.ScheduledAt = *p.ScheduledAt
			}
			if p.Payload != nil {
				m.Payload = p.Payload
			}
			m.UpdatedAt = now
		})
		if err != nil {
			return nil, s.storeErr(ctx, err, "message "+in.ID)
		}
		if ok {
			// After a crash the database may already hold a replayed copy
			// of a buffered message: change it too, or the flush (which
			// skips existing ids) would leave the old version to deliver.
			sctx, cancel := s.storeCtx(ctx)
			dm, err := s.d.Store.MessageUpdate(sctx, p)
			cancel()
			switch {
			case err == nil:
				return &messageOutput{Body: messageOut(dm, false)}, nil
			case errors.Is(err, store.ErrNotFound):
				return &messageOutput{Body: messageOut(m, true)}, nil
			case errors.Is(err, store.ErrConflict):
				return nil, s.storeErr(ctx, err, "message "+in.ID)
			default:
				s.log.WarnContext(ctx, "update of a buffered message could not check the database", slog.String("id", in.ID), slog.Any("err", err))
				return &messageOutput{Body: messageOut(m, true)}, nil
			}
		}
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	m, err := s.d.Store.MessageUpdate(sctx, p)
	if err != nil {
		return nil, s.storeErr(ctx, err, "message "+in.ID)
	}
	return &messageOutput{Body: messageOut(m, false)}, nil
}

func (s *server) deleteMessage(ctx context.Context, in *messageIDInput) (*deleteMessageOutput, error) {
	id := uuid.MustParse(in.ID)
	var inBuffer bool
	if s.d.Buffer != nil {
		var err error
		inBuffer, err = s.d.Buffer.Delete(ctx, id)
		if err != nil {
			return nil, s.storeErr(ctx, err, "message "+in.ID)
		}
	}
	sctx, cancel := s.storeCtx(ctx)
	err := s.d.Store.MessageDelete(sctx, id)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound) && inBuffer:
	case inBuffer:
		// The buffered copy is gone and will never be flushed; a database
		// copy exists only after a crash replay, which Discard removes.
		s.log.WarnContext(ctx, "delete of a buffered message could not check the database", slog.String("id", in.ID), slog.Any("err", err))
	default:
		return nil, s.storeErr(ctx, err, "message "+in.ID)
	}
	out := &deleteMessageOutput{}
	out.Body.MessageID = id
	out.Body.DeletedAt = s.now()
	return out, nil
}
