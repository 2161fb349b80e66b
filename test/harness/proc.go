package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one run of a child process whose output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and err is set
	err  error         // the exit error; read after done
}

// startProc starts bin with args and env, appending its stdout and stderr
// to logPath. The child dies with the test process (SIGKILL on the parent's
// death), so a crashed test leaves nothing running.
func startProc(bin string, args, env []string, logPath string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends sig and waits up to timeout for the exit, then kills. It
// returns the exit error, or an error saying the process had to be killed.
func (p *proc) stop(sig os.Signal, timeout time.Duration) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("did not exit within %s of %v: killed", timeout, sig)
	}
}

// logs holds the log files of a test's processes, to print their tails when
// the test failed.
type logs struct {
	mu    sync.Mutex // guards paths
	paths []string
}

func (l *logs) add(t testing.TB, name, path string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.paths {
		if p == path {
			return
		}
	}
	l.paths = append(l.paths, path)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("harness: last lines of %s (%s):\n%s", name, path, Tail(path, 60))
		}
	})
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor calls cond every interval until it returns true, and fails t if
// that has not happened within timeout. The last error cond returned is in
// the failure message.
func WaitFor(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	if err := waitFor(context.Background(), timeout, interval, cond); err != nil {
		t.Fatalf("harness: waiting for %s: %v", what, err)
	}
}

// waitFor is WaitFor returning an error. An error of cond that wraps
// errExited ends the wait at once: a process that exited will not become
// ready.
func waitFor(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.Is(err, errExited) {
			return err
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("not within %s: %w", timeout, last)
			}
			return fmt.Errorf("not within %s", timeout)
		case <-time.After(interval):
		}
	}
}

var errExited = errors.New("process exited")

// exitReason is what a process's log says of why it exited: its panic's
// message when it panicked (the log's last line is then a stack frame), or
// its last line.
func exitReason(out string) string {
	if i := strings.LastIndex(out, "panic: "); i >= 0 {
		line, _, _ := strings.Cut(out[i:], "\n")
		return line
	}
	return lastLine(out)
}
