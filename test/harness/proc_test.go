package harness

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestWaitForStopsWhenTheProcessExited checks that a wait for a process
// that exited ends at once with its error, while other errors are waited
// out until the timeout.
func TestWaitForStopsWhenTheProcessExited(t *testing.T) {
	start := time.Now()
	err := waitFor(context.Background(), time.Minute, time.Millisecond, func() (bool, error) {
		return false, fmt.Errorf("%w: panic: boom", errExited)
	})
	if !errors.Is(err, errExited) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %s, want errExited at once", err, time.Since(start))
	}
	err = waitFor(context.Background(), 50*time.Millisecond, time.Millisecond, func() (bool, error) {
		return false, errors.New("not yet")
	})
	if err == nil || errors.Is(err, errExited) {
		t.Fatalf("got %v, want a timeout", err)
	}
}
