package faults

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/test/harness"
)

// TestWALDiskFull runs a node whose WAL lives on a 256 MiB tmpfs (room for
// the WAL's reserve of 160 MiB and more), fills the
// filesystem under load, and checks that creates are refused with 507 (or
// 503) and a problem that says why, that the node stays up and loses
// nothing it accepted, and that creates succeed again once space returns.
func TestWALDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a size-capped tmpfs for the WAL needs root")
	}
	dir := filepath.Join(t.TempDir(), "walfs")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs on %s (%v: %s)", dir, err, out)
	}
	// Registered first, so it runs last: after the node is gone.
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })

	b := setup(t, bedOptions{walDir: filepath.Join(dir, "wal")})
	ledger := harness.NewLedger()
	l := startLoad(t, b.node, ledger, loadOptions{producers: 2})
	l.waitAccepted(200, time.Minute)

	filler := filepath.Join(dir, "filler")
	filled := fill(t, filler)
	fullAt := time.Now()
	ctx := context.Background()
	var refusal reply
	harness.WaitFor(t, 30*time.Second, 20*time.Millisecond, "a create refused for lack of space", func() (bool, error) {
		r, _, _ := create(ctx, b.node, ledger, l.o.channel, 0, -5)
		refusal = r
		return r.status == http.StatusInsufficientStorage || r.status == http.StatusServiceUnavailable, r.err
	})
	var problem struct {
		Detail string `json:"detail"`
	}
	require.NoError(t, json.Unmarshal(refusal.body, &problem), "%s", refusal)
	require.Equal(t, "application/problem+json", refusal.header.Get("Content-Type"))
	require.Contains(t, problem.Detail, "disk", "the problem must say the node is out of disk space")
	t.Logf("disk full (%d MiB of filler written): creates refused %s later with %d %q",
		filled>>20, since(fullAt), refusal.status, problem.Detail)

	// While full: the node stays up, and every create is refused cleanly.
	statuses := map[int]int{}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		r, _, _ := create(ctx, b.node, ledger, l.o.channel, 0, -6)
		statuses[r.status]++
		pause(ctx, 20*time.Millisecond)
	}
	require.True(t, b.node.Running(), "the node died when its disk filled")
	require.Zero(t, statuses[0]+statuses[http.StatusInternalServerError], "creates while full: %v", statuses)

	require.NoError(t, os.Remove(filler))
	freedAt := time.Now()
	harness.WaitFor(t, time.Minute, 20*time.Millisecond, "a create accepted after space returned", func() (bool, error) {
		r, _, _ := create(ctx, b.node, ledger, l.o.channel, 0, -7)
		return r.status == http.StatusCreated, r.err
	})
	t.Logf("creates while full: %v; accepted again %s after the filler was deleted", statuses, since(freedAt))

	l.waitAccepted(200, time.Minute)
	l.drain(time.Minute)
	t.Logf("load: %s", l.report())
	l.requireNoServerErrors(http.StatusInsufficientStorage, http.StatusServiceUnavailable)
	b.finish(t, ledger)
}

// fill writes path until the filesystem is full and returns how much it
// wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		require.NoError(t, err)
	}
}
