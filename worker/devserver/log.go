package devserver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// serverLogger hands the Temporal server's log to slog, dropping what is
// below level: the server logs much at INFO that a developer does not need.
type serverLogger struct {
	log   *slog.Logger
	level slog.Level
	// building, when set and true, turns Fatal into a panic of a
	// *fatalError (see newServer).
	building *atomic.Bool
	// stopping, when set and true, sends every line to DEBUG.
	stopping *atomic.Bool
}

var _ log.Logger = serverLogger{}

func (l serverLogger) Debug(msg string, tags ...tag.Tag) { l.emit(slog.LevelDebug, msg, tags) }
func (l serverLogger) Info(msg string, tags ...tag.Tag)  { l.emit(slog.LevelInfo, msg, tags) }
func (l serverLogger) Warn(msg string, tags ...tag.Tag)  { l.emit(slog.LevelWarn, msg, tags) }
func (l serverLogger) Error(msg string, tags ...tag.Tag) { l.emit(slog.LevelError, msg, tags) }

// DPanic, Panic and Fatal log at ERROR: an embedded server must not take
// the process down with it.
func (l serverLogger) DPanic(msg string, tags ...tag.Tag) { l.emit(slog.LevelError, msg, tags) }
func (l serverLogger) Panic(msg string, tags ...tag.Tag)  { l.emit(slog.LevelError, msg, tags) }

func (l serverLogger) Fatal(msg string, tags ...tag.Tag) {
	if l.building != nil && l.building.Load() {
		panic(newFatalError(msg, tags))
	}
	l.emit(slog.LevelError, msg, tags)
}

// fatalError is a Fatal line of a server being built.
type fatalError struct {
	msg  string
	tags []tag.Tag
	err  error // the first tag that holds an error
}

func newFatalError(msg string, tags []tag.Tag) *fatalError {
	e := &fatalError{msg: msg, tags: tags}
	for _, t := range tags {
		// A tag's Value is the error's text; its zap field holds the error.
		if z, ok := t.(interface{ Field() zap.Field }); ok && e.err == nil {
			if f := z.Field(); f.Type == zapcore.ErrorType {
				e.err, _ = f.Interface.(error)
			}
		}
	}
	return e
}

func (e *fatalError) Error() string {
	var b strings.Builder
	b.WriteString(e.msg)
	sep := ": "
	for _, t := range e.tags {
		fmt.Fprintf(&b, "%s%s=%v", sep, t.Key(), t.Value())
		sep = ", "
	}
	return b.String()
}

func (e *fatalError) Unwrap() error { return e.err }

func (l serverLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	if l.stopping != nil && l.stopping.Load() {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if level < l.level || !l.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, len(tags))
	for i, t := range tags {
		attrs[i] = slog.Any(t.Key(), t.Value())
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}
