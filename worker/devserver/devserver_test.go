package devserver_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/smq/smq/store/postgres/localpg"
	"github.com/smq/smq/worker/devserver"
)

func hello(_ workflow.Context, name string) (string, error) { return "hello " + name, nil }

func start(t *testing.T, cfg devserver.Config) *devserver.Server {
	t.Helper()
	cfg.GRPCAddr = "127.0.0.1:0"
	if cfg.UIAddr == "" {
		cfg.UIAddr = devserver.UIOff
	}
	s, err := devserver.Start(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	return s
}

func dial(t *testing.T, s *devserver.Server, namespace string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.GRPCAddr(),
		Namespace: namespace,
		Logger:    tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// runHello runs a trivial workflow through a worker on s.
func runHello(t *testing.T, c client.Client, id string) {
	t.Helper()
	w := worker.New(c, "hello", worker.Options{})
	w.RegisterWorkflow(hello)
	require.NoError(t, w.Start())
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "hello"}, hello, "smq")
	require.NoError(t, err)
	var got string
	require.NoError(t, run.Get(ctx, &got))
	require.Equal(t, "hello smq", got)
}

func TestRunsAWorkflowInMemory(t *testing.T) {
	began := time.Now()
	s := start(t, devserver.Config{})
	t.Logf("server up in %v at %s", time.Since(began), s.GRPCAddr())
	require.Empty(t, s.UIAddr())
	runHello(t, dial(t, s, "default"), "hello-1")
}

func TestRestartOnTheSameFileKeepsNamespaceAndHistory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "temporal.db")
	s := start(t, devserver.Config{DBFile: file, Namespace: "smq"})
	c := dial(t, s, "smq")
	runHello(t, c, "hello-before")
	c.Close()
	s.Stop()

	s = start(t, devserver.Config{DBFile: file, Namespace: "smq"})
	c = dial(t, s, "smq")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := c.DescribeWorkflowExecution(ctx, "hello-before", "")
	require.NoError(t, err, "the first run's workflow is gone")
	require.Equal(t, "Completed", desc.WorkflowExecutionInfo.Status.String())
	runHello(t, c, "hello-after")
}

func TestServesTheUI(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	uiAddr := l.Addr().String()
	require.NoError(t, l.Close())

	s := start(t, devserver.Config{UIAddr: uiAddr})
	require.Equal(t, uiAddr, s.UIAddr())
	resp, err := http.Get("http://" + uiAddr + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "<html", "the UI's assets ship with the binary")
}

func TestRefusesATakenUIPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = devserver.Start(context.Background(), devserver.Config{GRPCAddr: "127.0.0.1:0", UIAddr: l.Addr().String()})
	require.ErrorContains(t, err, "temporal ui port")
	require.ErrorContains(t, err, "is taken")
}

// takenPort returns a port of 127.0.0.1 that a listener holds until the
// test ends.
func takenPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// A port found free can be taken by another process before the server
// listens on it. Whichever of the build's ports it is, the build is tried
// again on other ports and the server comes up.
func TestBuildsAgainWhenAPortIsTaken(t *testing.T) {
	for i, service := range []string{"history", "matching", "worker", "frontend HTTP API", "frontend gRPC"} {
		t.Run(service, func(t *testing.T) {
			taken := takenPort(t)
			calls := 0
			defer devserver.SetFreePorts(func(ip string, n int) ([]int, error) {
				calls++
				ports, err := localpg.FreePorts(ip, n)
				if err == nil && calls == 1 {
					ports[i] = taken
				}
				return ports, err
			})()
			s := start(t, devserver.Config{})
			require.Equal(t, 2, calls, "one build on the taken port, one on free ports")
			runHello(t, dial(t, s, "default"), "hello-"+strconv.Itoa(i))
		})
	}
}

// Ports that stay taken end in an error, not a panic, after a few builds.
func TestFailsWhenPortsStayTaken(t *testing.T) {
	taken := takenPort(t)
	calls := 0
	defer devserver.SetFreePorts(func(ip string, n int) ([]int, error) {
		calls++
		ports, err := localpg.FreePorts(ip, n)
		if err == nil {
			ports[4] = taken
		}
		return ports, err
	})()
	_, err := devserver.Start(context.Background(), devserver.Config{GRPCAddr: "127.0.0.1:0", UIAddr: devserver.UIOff})
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, strconv.Itoa(taken))
	require.Equal(t, 3, calls)
}

// lockedBuffer is a log destination the server's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// While the server stops, its services log each other's absence at WARN
// and ERROR ("Failed to poll for task", dial errors): Ctrl-C on `smq dev`
// printed a dozen of them. Those lines go to DEBUG.
func TestStopsQuietly(t *testing.T) {
	var out lockedBuffer
	s := start(t, devserver.Config{Logger: slog.New(slog.NewTextHandler(&out, nil))})
	runHello(t, dial(t, s, "default"), "hello-quiet")
	before := len(out.String())
	s.Stop()
	time.Sleep(200 * time.Millisecond) // what its goroutines log on their way out
	require.Empty(t, out.String()[before:], "the server logged while it stopped")
}
