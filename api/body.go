package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
)

// The create, ack and nack operations read their own bodies. Huma
// validates a body by decoding it into a generic tree (maps, slices,
// interfaces) and checking that against the body's JSON schema, then
// decodes it a second time into the input; for a batch of 1000 messages,
// or an ack of 1000 ids, that was most of the request's CPU and garbage.
// So these operations take the body as RawBody, with SkipValidateBody, and
// their input's Resolve calls readBody: one pass decodes a well-formed,
// valid body of the usual shape straight into the input (decodeMessage,
// decodeBatch, decodeLease, decodeNack). Any other body (malformed, of another
// content type, with a wrong type, an unknown, missing, null, duplicate or
// escaped field, a value out of bounds) goes the way Huma went
// (bodyReader.huma), so that a client gets the same problem, with the same
// locations and messages, as when Huma read it. The fast path only ever
// accepts what that way accepts, and decodes it to the same values; the
// fuzz targets of body_fuzz_test.go hold it to that.

// bodyReaderKey is the huma.Operation.Metadata key of an operation's
// bodyReader.
const bodyReaderKey = "smq.bodyReader"

// bodyReader reads the body of one operation the way Huma reads a Body
// field.
type bodyReader struct {
	api      huma.API
	registry huma.Registry
	schema   *huma.Schema // the body's documented schema
}

// registerWithBody registers op like huma.Register, for an input I that
// takes its body as RawBody and decodes it in Resolve with readBody. The
// body is documented as huma.Register documents a Body field of type B in
// I, so the OpenAPI document is the same as with one.
//
// Huma replaces the connection's read deadline, which the server set to
// ReadTimeout from the request's start, with one BodyReadTimeout from when
// it reads the body: 5 s by default, which cut off a large batch on a slow
// link long before the ReadTimeout meant to allow it. readTimeout, the
// server's ReadTimeout, is that bound instead (Huma's 5 s where it is zero).
func registerWithBody[I, O, B any](a huma.API, readTimeout time.Duration, op huma.Operation, handler func(context.Context, *I) (*O, error)) {
	registry := a.OpenAPI().Components.Schemas
	// Huma names an unnamed Body type after its input: createMessagesInputBody.
	hint := reflect.TypeFor[I]().Name() + "Body"
	schema := huma.SchemaFromField(registry, reflect.StructField{Name: "Body", Type: reflect.TypeFor[B]()}, hint)
	body := &huma.RequestBody{
		Required: true,
		Content:  map[string]*huma.MediaType{"application/json": {Schema: schema}},
	}
	op.RequestBody = body
	op.SkipValidateBody = true
	// Huma's defaults for a Body field; it sets none for a RawBody.
	op.BodyReadTimeout = cmp.Or(op.BodyReadTimeout, readTimeout, 5*time.Second)
	op.MaxBodyBytes = cmp.Or(op.MaxBodyBytes, 1<<20)
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[bodyReaderKey] = &bodyReader{api: a, registry: registry, schema: schema}
	huma.Register(a, op, handler)
	// Huma documents a RawBody as application/octet-stream; the body is the
	// JSON object above. Register shares body with the registered operation.
	delete(body.Content, "application/octet-stream")
}

// readBody decodes raw, the body of the operation of ctx, into dst. fast is
// the one-pass decoder; it reports false for anything it does not take, and
// then dst is decoded as Huma would. fast must not keep raw, which Huma
// reuses once the request is answered. readBody returns the errors of a
// body Huma would refuse, as Huma words them.
func readBody[T any](ctx huma.Context, raw []byte, dst *T, fast func([]byte, *T) bool) []error {
	contentType := ctx.Header("Content-Type")
	if jsonContentType(contentType) {
		if fast(raw, dst) {
			return nil
		}
		*dst = *new(T)
	}
	br := ctx.Operation().Metadata[bodyReaderKey].(*bodyReader)
	return br.huma(contentType, raw, dst)
}

// huma reads body into dst as Huma reads a Body field when it validates it:
// it decodes the body into a generic value with the API's format for the
// content type (400 when it cannot, 415 for an unknown content type),
// validates that against the schema (422), and decodes the body into dst.
func (br *bodyReader) huma(contentType string, body []byte, dst any) []error {
	var parsed any
	if err := br.api.Unmarshal(contentType, body, &parsed); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, huma.ErrUnknownContentType) {
			status = http.StatusUnsupportedMediaType
		}
		return []error{&statusDetail{status, &huma.ErrorDetail{Location: "body", Message: err.Error(), Value: string(body)}}}
	}
	pb := huma.NewPathBuffer(make([]byte, 0, 64), 0)
	pb.Push("body")
	res := &huma.ValidateResult{}
	huma.Validate(br.registry, br.schema, pb, huma.ModeWriteToServer, parsed, res)
	if len(res.Errors) > 0 {
		return res.Errors
	}
	if err := br.api.Unmarshal(contentType, body, dst); err != nil {
		return []error{&huma.ErrorDetail{Location: "body", Message: err.Error(), Value: string(body)}}
	}
	return nil
}

// statusDetail is an error detail that also sets the problem's status, as
// Huma's own for a malformed body (400) or an unknown content type (415).
type statusDetail struct {
	status int
	detail *huma.ErrorDetail
}

func (e *statusDetail) Error() string                  { return e.detail.Error() }
func (e *statusDetail) ErrorDetail() *huma.ErrorDetail { return e.detail }

// GetStatus returns the problem's status.
func (e *statusDetail) GetStatus() int { return e.status }

var _ interface {
	huma.StatusError
	huma.ErrorDetailer
} = (*statusDetail)(nil)

// jsonContentType reports whether Huma reads a body of this Content-Type
// with its JSON format (encoding/json): when the media type, or its suffix
// after a "+", is application/json or json, or when there is none.
func jsonContentType(contentType string) bool {
	start := strings.IndexByte(contentType, '+') + 1
	end := strings.IndexByte(contentType, ';')
	if end < 0 {
		end = len(contentType)
	}
	if end < start {
		return false
	}
	switch contentType[start:end] {
	case "", "application/json", "json":
		return true
	}
	return false
}

// decodeMessage decodes the body of a single create, if it takes it.
func decodeMessage(b []byte, m *MessageIn) bool {
	// The payload is a slice of the body: copy the body.
	r := jsonReader{b: bytes.Clone(b)}
	return r.message(m) && r.end()
}

// createMessagesBody is the body of a batch create. It is unnamed, as it
// was as the Body field of createMessagesInput, so that its schema keeps
// the name Huma gave it: CreateMessagesInputBody.
type createMessagesBody = struct {
	Messages []MessageIn `json:"messages" minItems:"1" maxItems:"1000" doc:"1 to 1000 messages."`
}

// decodeBatch decodes the body of a batch create, if it takes it.
func decodeBatch(b []byte, body *createMessagesBody) bool {
	// The payloads are slices of the body: one copy for all of them.
	r := jsonReader{b: bytes.Clone(b)}
	if !r.next('{') {
		return false
	}
	r.space()
	if key, ok := r.key(); !ok || string(key) != "messages" {
		return false
	}
	r.space()
	if r.literal("null") {
		// Valid by the schema (the list is nullable); createMessages
		// answers it.
		return r.next('}') && r.end()
	}
	if !r.next('[') || r.next(']') {
		return false
	}
	// About 30 bytes is the smallest message: {"channel":"c","payload":1}.
	msgs := make([]MessageIn, 0, min(MaxBatch, len(b)/30+1))
	for {
		if len(msgs) == MaxBatch {
			return false
		}
		msgs = append(msgs, MessageIn{})
		if !r.message(&msgs[len(msgs)-1]) {
			return false
		}
		if r.next(',') {
			continue
		}
		if r.next(']') {
			break
		}
		return false
	}
	body.Messages = msgs
	return r.next('}') && r.end()
}

// decodeLease decodes the body of an ack, if it takes it.
func decodeLease(b []byte, body *leaseBody) bool {
	return decodeObject(b, func(r *jsonReader, key []byte, s string) (uint8, bool) {
		return leaseField(r, key, s, &body.MessageIDs, &body.Receipts)
	})
}

// leaseField reads the fields that name leases, in an ack's body or a
// nack's: message_ids (bit 1) and receipts (bit 2).
func leaseField(r *jsonReader, key []byte, s string, ids, receipts *[]string) (uint8, bool) {
	switch string(key) {
	case "message_ids":
		return 1, r.stringList(ids, s)
	case "receipts":
		return 2, r.stringList(receipts, s)
	}
	return 0, false
}

// decodeNack decodes the body of a nack, if it takes it.
func decodeNack(b []byte, body *nackBody) bool {
	return decodeObject(b, func(r *jsonReader, key []byte, s string) (uint8, bool) {
		switch string(key) {
		case "delay":
			ok := r.integerOrString(&body.Delay.raw)
			// A slice of b, which Huma reuses.
			body.Delay.raw = bytes.Clone(body.Delay.raw)
			return 4, ok
		case "reason":
			return 8, r.text(&body.Reason, 4096)
		}
		return leaseField(r, key, s, &body.MessageIDs, &body.Receipts)
	})
}

// decodeObject reads b as one JSON object, handing each key to field, which
// reads the value and names the field by a bit of its own. A key it does not
// take, a value it cannot read or a field seen twice, and the body is not
// taken. s is b as a string: the strings read are substrings of it, one
// allocation for all.
func decodeObject(b []byte, field func(r *jsonReader, key []byte, s string) (uint8, bool)) bool {
	r := jsonReader{b: b}
	s := string(b)
	var seen uint8
	if !r.next('{') {
		return false
	}
	if r.next('}') {
		return r.end()
	}
	for {
		r.space()
		key, ok := r.key()
		if !ok {
			return false
		}
		f, ok := field(&r, key, s)
		if !ok || f == 0 || seen&f != 0 {
			return false
		}
		seen |= f
		if !r.next(',') {
			return r.next('}') && r.end()
		}
	}
}

// stringList reads null, or a list of at most MaxBatch strings of
// printable ASCII without escapes, as substrings of s, the body as a
// string.
func (r *jsonReader) stringList(dst *[]string, s string) bool {
	if r.literal("null") {
		return true
	}
	if !r.next('[') {
		return false
	}
	// encoding/json decodes [] to an empty list, not to nil. The capacity
	// is a guess from the bytes left.
	list := make([]string, 0, min(MaxBatch, (len(r.b)-r.i)/8+1))
	if r.next(']') {
		*dst = list
		return true
	}
	for {
		if len(list) == MaxBatch {
			return false
		}
		r.space()
		start := r.i
		if !r.str() {
			return false
		}
		for _, c := range r.b[start+1 : r.i-1] {
			if c == '\\' || c >= 0x80 {
				return false
			}
		}
		list = append(list, s[start+1:r.i-1])
		if r.next(',') {
			continue
		}
		if !r.next(']') {
			return false
		}
		*dst = list
		return true
	}
}

// text reads a free-text field: null, or a string of at most maxRunes
// characters without escapes, in valid UTF-8 (encoding/json replaces
// invalid bytes, so those go the slow way). A nack's reason takes 4096, a
// dedup key 256.
func (r *jsonReader) text(dst *string, maxRunes int) bool {
	if r.literal("null") {
		return true
	}
	start := r.i
	if !r.str() {
		return false
	}
	text := r.b[start+1 : r.i-1]
	if bytes.IndexByte(text, '\\') >= 0 || !utf8.Valid(text) || utf8.RuneCount(text) > maxRunes {
		return false
	}
	*dst = string(text)
	return true
}

// jsonReader reads a JSON text for the fast path. Each method reports
// false for anything it does not take; it never takes what encoding/json
// would refuse or decode differently.
type jsonReader struct {
	b []byte
	i int
	// channel is the last channel read: the messages of a batch mostly
	// share one, and need not each allocate it.
	channel string
}

// space skips white space.
func (r *jsonReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// next skips white space and then c, if c is there.
func (r *jsonReader) next(c byte) bool {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (r *jsonReader) end() bool {
	r.space()
	return r.i == len(r.b)
}

// literal reads lit (true, false or null), if it is there.
func (r *jsonReader) literal(lit string) bool {
	if !bytes.HasPrefix(r.b[r.i:], []byte(lit)) {
		return false
	}
	r.i += len(lit)
	return true
}

// key reads an object key without escapes and the colon after it.
func (r *jsonReader) key() ([]byte, bool) {
	start := r.i
	if !r.str() {
		return nil, false
	}
	key := r.b[start+1 : r.i-1]
	if bytes.IndexByte(key, '\\') >= 0 || !r.next(':') {
		return nil, false
	}
	r.space()
	return key, true
}

// message reads a message object into m.
func (r *jsonReader) message(m *MessageIn) bool {
	if !r.next('{') {
		return false
	}
	var seen, field uint8
	for {
		r.space()
		key, ok := r.key()
		if !ok {
			return false
		}
		// Only the exact names, each once. encoding/json also takes a
		// name in another case and keeps the last value, while Huma
		// validates the exact name's: such a body goes the slow way.
		switch string(key) {
		case "channel":
			field, ok = 1, r.channelName(&m.Channel)
		case "payload":
			field = 2
			m.Payload, ok = r.value()
		case "scheduled_at":
			field, ok = 4, r.integerOrString(&m.ScheduledAt.raw)
		case "delay":
			field, ok = 8, r.integerOrString(&m.Delay.raw)
		case "max_attempts":
			field, ok = 16, r.maxAttempts(&m.MaxAttempts)
		case "dedup_key":
			field, ok = 32, r.text(&m.DedupKey, 256)
		default:
			return false
		}
		if !ok || seen&field != 0 {
			return false
		}
		seen |= field
		if r.next(',') {
			continue
		}
		// channel and payload are required.
		return r.next('}') && seen&3 == 3
	}
}

// channelName reads a channel's name: 1 to 128 of A-Z a-z 0-9 . _ -.
func (r *jsonReader) channelName(dst *string) bool {
	start := r.i
	if !r.str() {
		return false
	}
	name := r.b[start+1 : r.i-1]
	if !validChannel(name) {
		return false
	}
	if string(name) != r.channel {
		r.channel = string(name)
	}
	*dst = r.channel
	return true
}

// validChannel reports whether name is 1 to 128 of A-Z a-z 0-9 . _ -, the
// pattern of MessageIn.Channel and store.ValidChannel.
func validChannel[S string | []byte](name S) bool { return validName(name, 128) }

// validName reports whether name is 1 to maxLen of A-Z a-z 0-9 . _ -.
func validName[S string | []byte](name S, maxLen int) bool {
	if len(name) == 0 || len(name) > maxLen {
		return false
	}
	for i := range len(name) {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// maxAttempts reads max_attempts: null, or an integer from 1 to 1000
// written without fraction or exponent (encoding/json refuses those for
// an int).
func (r *jsonReader) maxAttempts(dst *int) bool {
	if r.literal("null") {
		return true
	}
	start := r.i
	if integer, ok := r.number(); !ok || !integer || r.i-start > 4 {
		return false
	}
	n := 0
	for _, c := range r.b[start:r.i] {
		if c == '-' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 1000 {
		return false
	}
	*dst = n
	return true
}

// integerOrString reads a Schedule or a Duration: null, a string, or a
// number with no fractional part (the schema's integer).
func (r *jsonReader) integerOrString(dst *json.RawMessage) bool {
	start := r.i
	switch {
	case r.literal("null"):
	case r.i < len(r.b) && r.b[r.i] == '"':
		if !r.str() {
			return false
		}
	default:
		integer, ok := r.number()
		if !ok {
			return false
		}
		// See value on the range of numbers.
		if !integer || r.i-start >= 300 {
			f, err := strconv.ParseFloat(string(r.b[start:r.i]), 64)
			if err != nil || f != math.Trunc(f) {
				return false
			}
		}
	}
	*dst = r.b[start:r.i:r.i]
	return true
}

// str reads a string, checking its escapes: encoding/json refuses control
// characters and unknown escapes, but not invalid UTF-8, which it replaces.
func (r *jsonReader) str() bool {
	b := r.b
	if r.i >= len(b) || b[r.i] != '"' {
		return false
	}
	for i := r.i + 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			r.i = i + 1
			return true
		case c == '\\':
			i++
			if i == len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return false
				}
				i += 4
			default:
				return false
			}
		case c < 0x20:
			return false
		}
	}
	return false
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number reads a number as JSON writes it, and reports whether it is an
// integer literal: no fraction, no exponent.
func (r *jsonReader) number() (integer, ok bool) {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i == len(b):
		return false, false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		if i == len(b) || !isDigit(b[i]) {
			return false, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return false, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	r.i = i
	return integer, true
}

// maxPayloadDepth bounds the nesting the fast path reads in a payload; a
// deeper one goes the way Huma went (encoding/json refuses more than
// 10,000 levels in the whole body).
const maxPayloadDepth = 128

// value reads any JSON value (a payload) and returns its bytes. Its
// numbers must fit a float64, as encoding/json requires when it decodes
// them into an interface.
func (r *jsonReader) value() (json.RawMessage, bool) {
	b := r.b
	start := r.i
	var objects [maxPayloadDepth / 64]uint64 // bit d: level d is an object
	depth := 0
	for {
		// A value.
		if r.i == len(b) {
			return nil, false
		}
		switch c := b[r.i]; c {
		case '{', '[':
			if depth == maxPayloadDepth {
				return nil, false
			}
			r.i++
			if c == '{' {
				objects[depth/64] |= 1 << (depth % 64)
			} else {
				objects[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			r.space()
			switch {
			case r.i < len(b) && (c == '{' && b[r.i] == '}' || c == '[' && b[r.i] == ']'):
				r.i++
				depth--
			case c == '{':
				if !r.str() || !r.next(':') {
					return nil, false
				}
				r.space()
				continue
			default:
				continue
			}
		case '"':
			if !r.str() {
				return nil, false
			}
		case 't':
			if !r.literal("true") {
				return nil, false
			}
		case 'f':
			if !r.literal("false") {
				return nil, false
			}
		case 'n':
			if !r.literal("null") {
				return nil, false
			}
		default:
			numStart := r.i
			integer, ok := r.number()
			if !ok {
				return nil, false
			}
			// An integer of fewer than 300 digits is under 1e300; any
			// other number is checked.
			if n := r.i - numStart; !integer || n >= 300 {
				if _, err := strconv.ParseFloat(string(b[numStart:r.i]), 64); err != nil {
					return nil, false
				}
			}
		}
		// After a value: close what ends here, then the next element.
		for {
			if depth == 0 {
				return b[start:r.i:r.i], true
			}
			r.space()
			if r.i == len(b) {
				return nil, false
			}
			object := objects[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			c := b[r.i]
			r.i++
			if c == ',' {
				r.space()
				if object && (!r.str() || !r.next(':')) {
					return nil, false
				}
				r.space()
				break
			}
			if object && c == '}' || !object && c == ']' {
				depth--
				continue
			}
			return nil, false
		}
	}
}
