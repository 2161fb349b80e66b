package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/smq/smq/store"
)

// Retry-After values, in seconds.
const (
	retryBufferFull  = "1"
	retryUnavailable = "2"
)

// writeProblem writes an RFC 9457 problem outside Huma (routing errors,
// panics, /metrics auth).
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(&huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: detail})
}

// writeHumaErr writes err from a Huma middleware.
func writeHumaErr(ctx huma.Context, err huma.StatusError) {
	ctx.SetStatus(err.GetStatus())
	_ = json.NewEncoder(ctx.BodyWriter()).Encode(err)
}

// invalid returns a 422 naming each bad field.
func invalid(details ...*huma.ErrorDetail) error {
	errs := make([]error, len(details))
	msg := "validation failed"
	for i, d := range details {
		errs[i] = d
		if i == 0 {
			msg = fmt.Sprintf("validation failed: %s: %s", d.Location, d.Message)
		}
	}
	if len(details) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(details)-1)
	}
	return huma.Error422UnprocessableEntity(msg, errs...)
}

// field is a shorthand for one bad field.
func field(location, message string, value any) *huma.ErrorDetail {
	return &huma.ErrorDetail{Location: location, Message: message, Value: value}
}

// storeErr maps an error of the store or the buffer to the problem a client
// sees, and logs what the client cannot act on.
func (s *server) storeErr(ctx context.Context, err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return huma.Error404NotFound(what + " not found")
	case errors.Is(err, store.ErrStaleLease):
		return huma.Error409Conflict("stale receipt: the lease expired or the message was acked, and nothing was changed")
	case errors.Is(err, store.ErrConflict):
		return huma.Error409Conflict(what + " is leased by a consumer and cannot change until it is acked, nacked or its lease expires")
	case errors.Is(err, store.ErrBufferFull):
		return huma.ErrorWithHeaders(huma.Error429TooManyRequests("the node's buffer is full; retry shortly"),
			http.Header{"Retry-After": {retryBufferFull}})
	case errors.Is(err, store.ErrStorageFull):
		return huma.NewError(http.StatusInsufficientStorage, "the node's buffer has no disk space left")
	case errors.Is(err, store.ErrBufferFailed):
		s.log.ErrorContext(ctx, "buffer failed", slog.String("op", what), slog.Any("err", err))
		return huma.Error503ServiceUnavailable("the node's write-ahead log failed to sync: this request may or may not have taken effect, and the node takes no writes until it restarts; send it to another node")
	case errors.Is(err, store.ErrUnavailable):
		return huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("the database is unavailable; retry shortly"),
			http.Header{"Retry-After": {retryUnavailable}})
	case ctx.Err() != nil:
		// The client went away; nobody reads this answer.
		return huma.NewError(499, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		s.log.WarnContext(ctx, "database call timed out", slog.String("op", what), slog.Any("err", err))
		return huma.ErrorWithHeaders(huma.Error503ServiceUnavailable(
			fmt.Sprintf("the database did not answer within %s; retry shortly", s.d.StoreTimeout)),
			http.Header{"Retry-After": {retryUnavailable}})
	}
	s.log.ErrorContext(ctx, "store error", slog.String("op", what), slog.Any("err", err))
	return huma.Error500InternalServerError("internal error; the request id is in the X-Request-Id header")
}
