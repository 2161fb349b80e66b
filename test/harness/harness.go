// Package harness starts and controls the real parts of SMQ as separate
// processes, for the end-to-end and fault-injection tests: the smq binary
// (Node), a throwaway PostgreSQL (Postgres), and an embedded Temporal server
// in a process of its own (Temporal), each of which a test can stop, kill
// and start again independently of the others. Ledger checks, at the end,
// that every accepted message was delivered once and on time, or still
// waits in the database.
//
// Everything a helper starts is stopped by t.Cleanup; a node's or server's
// log is printed (its tail) when the test failed. No helper sleeps for a
// fixed time: each waits on a condition, with a deadline.
//
// The binaries are built once per test process, without -race whatever the
// test binary was built with. SMQ_TEST_BIN_DIR, when set, names a directory
// holding prebuilt smq and temporald binaries to use instead.
package harness

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binary returns the path of the smq binary built from ./cmd/smq, building
// it on first use (about a minute with a warm build cache, up to five cold:
// it links the Temporal server).
func Binary(t testing.TB) string {
	t.Helper()
	return filepath.Join(binaries(t), "smq")
}

func binaries(t testing.TB) string {
	t.Helper()
	dir, err := buildAll()
	if err != nil {
		t.Fatalf("harness: build: %v", err)
	}
	return dir
}

// buildAll builds the binaries once per process and returns their
// directory.
func buildAll() (string, error) {
	buildOnce.Do(func() {
		if dir := os.Getenv("SMQ_TEST_BIN_DIR"); dir != "" {
			binDir = dir
			for _, name := range []string{"smq", "temporald"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					buildErr = fmt.Errorf("SMQ_TEST_BIN_DIR: %w", err)
				}
			}
			return
		}
		binDir, buildErr = build()
	})
	return binDir, buildErr
}

// build builds smq and temporald into a directory of the user's cache
// kept per checkout: go build leaves an up-to-date binary as it is, so a
// later test process waits seconds instead of the minute a link takes.
func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	dir = filepath.Join(dir, "smq-test-bin", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Test processes of several packages build at once under go test
	// ./...: one builds, the others then find the binaries up to date.
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/smq", "./test/harness/temporald")
	cmd.Dir = root
	// The binaries are never race-instrumented: the race detector would
	// slow the node down and test the Temporal server's code, not ours.
	cmd.Env = withoutEnv(os.Environ(), "GOFLAGS")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/smq ./test/harness/temporald: %w\n%s", err, out.String())
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "harness: built smq and temporald in %s\n", time.Since(start).Round(time.Second))
	}
	return dir, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the smq module")
	}
	return filepath.Dir(mod), nil
}

// withoutEnv returns env without the variables named by keys, and without
// any SMQ_ setting: a child gets exactly the settings its test gives it.
func withoutEnv(env []string, keys ...string) []string {
	var out []string
next:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SMQ_") {
			continue
		}
		for _, key := range keys {
			if k == key {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
