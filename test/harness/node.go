package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smq/smq/api/client"
	"github.com/smq/smq/store/postgres/localpg"
)

// NodeOptions configure a node. Every field but DatabaseURL has a default.
type NodeOptions struct {
	// DatabaseURL is SMQ_DATABASE_URL, a migrated database. Required.
	DatabaseURL string
	// TemporalAddr is SMQ_TEMPORAL_ADDRESS. Defaults to an address where
	// nothing listens: a node without Temporal (ingest and consumption of
	// ready messages work; nothing is scheduled).
	TemporalAddr string
	// Region is SMQ_REGION. Defaults to "local".
	Region string
	// NodeID is SMQ_NODE_ID. Defaults to "node-<n>", unique in the test
	// process.
	NodeID string
	// Buffer is SMQ_BUFFER: "wal" or "memory". Defaults to "wal".
	Buffer string
	// WALDir is SMQ_WAL_DIR. Defaults to a directory in t.TempDir.
	WALDir string
	// Env holds more settings, each "SMQ_NAME=value"; they win over the
	// fields above.
	Env []string
	// ReadyTimeout bounds the wait for /readyz after each start. Defaults
	// to 60 seconds.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait for the exit after SIGTERM, after which
	// the node is killed. Defaults to 60 seconds.
	StopTimeout time.Duration
}

var nodeCounter atomic.Int64

// NodeProc is an smq serve process. Each start listens on a free port, so
// URL and Client change when the node restarts; the node id, region, WAL
// directory and the rest of the environment stay.
type NodeProc struct {
	opts    NodeOptions
	bin     string
	logPath string

	mu   sync.Mutex // guards p and addr
	p    *proc
	addr string
}

// Node starts smq serve with opts and waits until /readyz answers 200. The
// node is killed when t ends, and its log's tail printed if t failed.
func Node(t testing.TB, opts NodeOptions) *NodeProc {
	t.Helper()
	if opts.DatabaseURL == "" {
		t.Fatal("harness: NodeOptions.DatabaseURL is required")
	}
	n := nodeCounter.Add(1)
	dir := t.TempDir()
	if opts.TemporalAddr == "" {
		// Port 1 of the loopback: nothing listens there, and connecting
		// fails at once.
		opts.TemporalAddr = "127.0.0.1:1"
	}
	if opts.Region == "" {
		opts.Region = "local"
	}
	if opts.NodeID == "" {
		opts.NodeID = fmt.Sprintf("node-%d", n)
	}
	if opts.Buffer == "" {
		opts.Buffer = "wal"
	}
	if opts.WALDir == "" {
		opts.WALDir = filepath.Join(dir, "wal")
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 60 * time.Second
	}
	node := &NodeProc{opts: opts, bin: Binary(t), logPath: filepath.Join(dir, opts.NodeID+".log")}
	var l logs
	l.add(t, "node "+opts.NodeID, node.logPath)
	t.Cleanup(node.Kill)
	if err := node.start(); err != nil {
		t.Fatalf("harness: node %s: %v", opts.NodeID, err)
	}
	return node
}

func (n *NodeProc) env(addr string) []string {
	env := withoutEnv(os.Environ())
	env = append(env,
		"SMQ_DATABASE_URL="+n.opts.DatabaseURL,
		"SMQ_HTTP_ADDR="+addr,
		"SMQ_TEMPORAL_ADDRESS="+n.opts.TemporalAddr,
		"SMQ_REGION="+n.opts.Region,
		"SMQ_NODE_ID="+n.opts.NodeID,
		"SMQ_BUFFER="+n.opts.Buffer,
		"SMQ_WAL_DIR="+n.opts.WALDir,
	)
	// Opts.Env wins; a variable is given once, so no reader of the
	// environment can see an older value.
	return dedupEnv(append(env, n.opts.Env...))
}

// dedupEnv keeps the last value of each variable.
func dedupEnv(env []string) []string {
	last := map[string]int{}
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = i
	}
	var out []string
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if last[k] == i {
			out = append(out, kv)
		}
	}
	return out
}

func (n *NodeProc) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil && !n.p.exited() {
		return fmt.Errorf("already running")
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = n.startOnce(); err == nil {
			return nil
		}
		// A free port picked here may be taken by someone else before the
		// node listens on it; only that failure is retried.
		if !strings.Contains(err.Error(), "address already in use") {
			return err
		}
	}
	return err
}

func (n *NodeProc) startOnce() error {
	port, err := localpg.FreePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	before := fileSize(n.logPath)
	appendLine(n.logPath, fmt.Sprintf("--- harness: starting node %s on %s at %s", n.opts.NodeID, addr, time.Now().Format(time.RFC3339Nano)))
	p, err := startProc(n.bin, []string{"serve"}, n.env(addr), n.logPath)
	if err != nil {
		return err
	}
	n.p, n.addr = p, addr
	hc := &http.Client{Timeout: 2 * time.Second}
	err = waitFor(context.Background(), n.opts.ReadyTimeout, 20*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%w (%v): %s", errExited, p.err, exitReason(readFrom(n.logPath, before)))
		}
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("/readyz: %s", resp.Status)
		}
		return true, nil
	})
	if err != nil {
		p.kill()
		n.p = nil
		return fmt.Errorf("not ready on %s: %w", addr, err)
	}
	return nil
}

// appendLine appends a line of the harness's own to a process's log.
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintln(f, line)
}

// URL is the node's API base URL, such as "http://127.0.0.1:41234".
func (n *NodeProc) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "http://" + n.addr
}

// Addr is the node's API address, host:port.
func (n *NodeProc) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// Client returns a generated client of the node's current address, without
// an API key (the node runs without keys unless Env sets SMQ_API_KEYS).
func (n *NodeProc) Client() *client.ClientWithResponses {
	c, err := client.New(n.URL(), "", client.WithHTTPClient(&http.Client{Timeout: 60 * time.Second}))
	if err != nil {
		panic(err) // only a malformed URL fails, and ours is not
	}
	return c
}

// ID is the node's id (SMQ_NODE_ID).
func (n *NodeProc) ID() string { return n.opts.NodeID }

// Region is the node's region (SMQ_REGION).
func (n *NodeProc) Region() string { return n.opts.Region }

// WALDir is the node's WAL directory.
func (n *NodeProc) WALDir() string { return n.opts.WALDir }

// LogPath is the node's log file; every start appends to it.
func (n *NodeProc) LogPath() string { return n.logPath }

// PID is the node process's id, or 0 when it does not run.
func (n *NodeProc) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil || n.p.exited() {
		return 0
	}
	return n.p.cmd.Process.Pid
}

// Running reports whether the node's process runs.
func (n *NodeProc) Running() bool { return n.PID() != 0 }

// Kill kills the node (SIGKILL: no flush, no deregistration) and waits for
// it to exit.
func (n *NodeProc) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil {
		n.p.kill()
	}
}

// Stop stops the node gracefully (SIGTERM) and waits for it to exit; the
// node is killed after NodeOptions.StopTimeout. It returns the exit error:
// nil when the node exited with status 0.
func (n *NodeProc) Stop() error {
	n.mu.Lock()
	p := n.p
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(syscall.SIGTERM, n.opts.StopTimeout)
}

// Signal sends sig to the node, such as SIGSTOP and SIGCONT to freeze and
// thaw it. It does not wait.
func (n *NodeProc) Signal(sig os.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil || n.p.exited() {
		return fmt.Errorf("node %s is not running", n.opts.NodeID)
	}
	return n.p.cmd.Process.Signal(sig)
}

// Exited is closed when the current run of the node has exited.
func (n *NodeProc) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return n.p.done
}

// Restart starts the node again after Kill or Stop (stopping it gracefully
// first if it still runs), with the same settings and WAL directory, on a
// new port, and waits until it is ready.
func (n *NodeProc) Restart(t testing.TB) {
	t.Helper()
	if n.Running() {
		if err := n.Stop(); err != nil {
			t.Logf("harness: node %s: stop before restart: %v", n.opts.NodeID, err)
		}
	}
	if err := n.start(); err != nil {
		t.Fatalf("harness: restart node %s: %v", n.opts.NodeID, err)
	}
}
