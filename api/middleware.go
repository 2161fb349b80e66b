package api

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// requestInfo is what the middleware layers learn about a request and the
// access log reports. The Huma middleware fills operation and key; all run
// on the request's goroutine.
type requestInfo struct {
	id        string
	operation string
	key       string
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// requestID gives every request an id (the client's X-Request-Id when it
// is 1 to 64 of A-Z a-z 0-9 . _ -; anything else is replaced, so that logs
// never carry arbitrary client text), returns it in the X-Request-Id
// response header, and puts it in the context, where LogHandler finds it.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validName(id, 64) {
			id = newRequestID()
		}
		// The key is canonical: Set would canonicalize it again.
		w.Header()["X-Request-Id"] = []string{id}
		next.ServeHTTP(w, r.WithContext(&requestContext{Context: r.Context(), info: requestInfo{id: id}}))
	})
}

// newRequestID returns 24 random hex digits. A request id must be unique,
// not secret: math/rand/v2's generator (ChaCha8, seeded from the system's
// randomness) is enough, and needs no system call.
func newRequestID() string {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

// requestContext is a request's context with its requestInfo: one
// allocation, where context.WithValue and the info were two.
type requestContext struct {
	context.Context
	info requestInfo
}

// Value returns the request's info for requestInfoKey.
func (c *requestContext) Value(key any) any {
	if key == (requestInfoKey{}) {
		return &c.info
	}
	return c.Context.Value(key)
}

// LogHandler wraps h so that every record logged with a request's context
// carries the request's id as request_id. Deps.Logger is wrapped with it;
// wrap the process's logger too so that lines logged deeper (the store, the
// buffer) with the request's context carry it as well.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(logHandler); ok {
		return h
	}
	return logHandler{h}
}

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.Handler.WithGroup(name)}
}

// statusWriter records what a handler wrote, for the access log and the
// panic handler.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// accessLog logs one line per request: never a header value, so never a
// key.
func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	// The line is handed to the handler under LogHandler with request_id
	// already last, as LogHandler would add it: the record grows once, not
	// twice.
	h := log.Handler()
	if lh, ok := h.(logHandler); ok {
		h = lh.Handler
	}
	// pc is where the line is logged, for handlers that report the
	// source; slog.Logger would look it up for every line.
	var pc atomic.Uintptr
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			logRequest(h, &pc, r, sw, start)
		})
	}
}

// logRequest writes the access-log line of r, if h takes its level. It is
// a function of its own so that a CPU profile tells the line's cost from
// the request's (test/bench reports it).
func logRequest(h slog.Handler, pc *atomic.Uintptr, r *http.Request, sw *statusWriter, start time.Time) {
	ctx := r.Context()
	level := slog.LevelInfo
	if sw.status >= 500 {
		level = slog.LevelWarn
	}
	if !h.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", sw.status),
		slog.Int64("bytes", sw.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
	)
	info := infoFrom(ctx)
	if info != nil && info.operation != "" {
		attrs = append(attrs, slog.String("operation", info.operation))
	}
	if info != nil && info.key != "" {
		attrs = append(attrs, slog.String("key", info.key))
	}
	if info != nil && info.id != "" {
		attrs = append(attrs, slog.String("request_id", info.id))
	}
	if pc.Load() == 0 {
		var pcs [1]uintptr
		runtime.Callers(1, pcs[:])
		pc.Store(pcs[0])
	}
	rec := slog.NewRecord(time.Now(), level, "request", pc.Load())
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}

// recoverer turns a handler's panic into a 500 problem (when nothing was
// written yet) and an error log line with the stack.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw, ok := w.(*statusWriter)
			if !ok {
				sw = &statusWriter{ResponseWriter: w}
			}
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "panic", slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
				if sw.status == 0 {
					writeProblem(sw, http.StatusInternalServerError, "internal error; the request id is in the X-Request-Id header")
				}
			}()
			next.ServeHTTP(sw, r)
		})
	}
}
