// Package browser opens what `smq dev` serves to people, the API docs and
// the Temporal UI, in headless Chromium, with every host but 127.0.0.1
// unresolvable: the pages must render from what the node serves, offline.
//
// SMQ_WRITE_SCREENSHOTS=1 also writes docs/img/docs.png and
// docs/img/temporal-ui.png, which the README shows.
package browser

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/smq/smq/store/postgres/localpg"
)

// repoRoot is the module root, relative to this package.
const repoRoot = "../.."

// TestDocsAndTemporalUIRenderOffline starts `smq dev` on free loopback
// ports, then checks that /docs lists every operation of api/openapi.yaml
// and that the Temporal UI's workflows page lists the scheduler.
func TestDocsAndTemporalUIRenderOffline(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		t.Skip("chromium is not installed: the docs page and the Temporal UI were not checked in a browser " +
			"(make deps installs it: apt-get install -y chromium)")
	}
	dev := startDev(t)

	// A second smq dev, with its own data, on the first one's PostgreSQL
	// port: it must stop with an error that says so, not use the first
	// one's server.
	t.Run("second dev on a taken pg port", func(t *testing.T) {
		data, err := os.MkdirTemp("", "smq-browser-second-")
		require.NoError(t, err)
		require.NoError(t, os.Chmod(data, 0o755))
		defer os.RemoveAll(data)
		cmd := exec.Command(dev.bin, "dev", "--data", data, "--pg-port", dev.pgPort, "--http-addr", freeAddr(t),
			"--temporal-grpc-addr", freeAddr(t), "--temporal-ui-addr", "off")
		cmd.Env = devEnv()
		cmd.WaitDelay = time.Minute
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "the second smq dev ran:\n%s", out)
		require.Contains(t, string(out), "port "+dev.pgPort+" is taken")
		require.Contains(t, string(out), "--pg-port")
	})

	t.Run("docs", func(t *testing.T) {
		ops := specOperations(t)
		// The sidebar lists a tag's operations only while that tag is open,
		// and a tag opens when one of its operations is shown: open one
		// operation per tag and gather what the sidebars list.
		listed := map[string]bool{}
		for _, tag := range slices.Sorted(maps.Keys(ops)) {
			first := ops[tag][0]
			dom := dumpDOM(t, browser, dev.api+"/docs#/operations/"+first)
			require.Contains(t, dom, "<elements-api", "the docs page did not render")
			for _, list := range ops {
				for _, op := range list {
					if strings.Contains(dom, `href="#/operations/`+op+`"`) {
						listed[op] = true
					}
				}
			}
		}
		for tag, list := range ops {
			for _, op := range list {
				require.True(t, listed[op], "the docs page does not list operation %s (tag %s)", op, tag)
			}
		}
		screenshot(t, browser, dev.api+"/docs#/operations/create-message", "docs.png")
	})

	t.Run("temporal-ui", func(t *testing.T) {
		// The scheduler workflow starts a moment after /readyz: wait for it
		// through the UI server's own API before opening the page.
		waitFor(t, time.Minute, "the scheduler workflow in the Temporal UI's API", func() (bool, string) {
			body, err := get(dev.ui + "/api/v1/namespaces/default/workflows")
			return err == nil && strings.Contains(body, "smq-scheduler/"), fmt.Sprint(err, " ", shorten(body))
		})
		page := dev.ui + "/namespaces/default/workflows"
		dom := dumpDOM(t, browser, page)
		require.Contains(t, dom, "smq-scheduler/local", "the workflows page does not list the scheduler")
		require.Contains(t, dom, "smq-janitor/local", "the workflows page does not list the janitor")
		screenshot(t, browser, page, "temporal-ui.png")
	})
}

// specOperations returns the operation ids of api/openapi.yaml by tag, in
// the spec's path order.
func specOperations(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "api", "openapi.yaml"))
	require.NoError(t, err)
	var spec struct {
		Paths map[string]map[string]struct {
			OperationID string   `yaml:"operationId"`
			Tags        []string `yaml:"tags"`
		} `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(b, &spec))
	ops := map[string][]string{}
	for _, path := range slices.Sorted(maps.Keys(spec.Paths)) {
		for _, method := range slices.Sorted(maps.Keys(spec.Paths[path])) {
			op := spec.Paths[path][method]
			require.NotEmpty(t, op.Tags, "operation %s has no tag", op.OperationID)
			ops[op.Tags[0]] = append(ops[op.Tags[0]], op.OperationID)
		}
	}
	require.NotEmpty(t, ops)
	return ops
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromiumArgs keep Chromium on loopback: every other host name resolves
// to nothing, and Chromium's own background calls are off.
func chromiumArgs(t *testing.T, extra ...string) []string {
	return append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir=" + t.TempDir(),
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions",
		"--virtual-time-budget=10000",
	}, extra...)
}

// dumpDOM returns the page's DOM after its scripts ran.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, browser, chromiumArgs(t, "--dump-dom", url)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	require.NoError(t, cmd.Run(), "chromium --dump-dom %s:\n%s", url, stderr.String())
	t.Logf("dumped %s (%d bytes) in %s", url, stdout.Len(), time.Since(start).Round(time.Millisecond))
	return stdout.String()
}

// screenshot writes docs/img/<name> when SMQ_WRITE_SCREENSHOTS=1.
func screenshot(t *testing.T, browser, url, name string) {
	t.Helper()
	if os.Getenv("SMQ_WRITE_SCREENSHOTS") != "1" {
		return
	}
	dir, err := filepath.Abs(filepath.Join(repoRoot, "docs", "img"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	tmp := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, browser, chromiumArgs(t, "--window-size=1280,900", "--hide-scrollbars",
		"--screenshot="+tmp, url)...).CombinedOutput()
	require.NoError(t, err, "chromium --screenshot %s:\n%s", url, out)
	b, err := os.ReadFile(tmp)
	require.NoError(t, err, "chromium wrote no screenshot:\n%s", out)
	require.True(t, bytes.HasPrefix(b, []byte("\x89PNG")), "the screenshot is not a PNG")
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	t.Logf("wrote docs/img/%s (%d bytes)", name, len(b))
}

// devNode is a running `smq dev`.
type devNode struct {
	api    string // base URL of the API and docs
	ui     string // base URL of the Temporal UI
	bin    string // the smq binary
	pgPort string // its PostgreSQL's port
}

// startDev builds smq and runs `smq dev` on free loopback ports with its
// data in a temporary directory, until /readyz answers; the test's cleanup
// stops it with SIGTERM.
func startDev(t *testing.T) *devNode {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "smq")
	build := exec.Command("go", "build", "-o", bin, "./cmd/smq")
	build.Dir = repoRoot
	start := time.Now()
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/smq:\n%s", out)
	t.Logf("built smq in %s", time.Since(start).Round(time.Millisecond))

	// Not t.TempDir: its 0700 parents keep out the postgres user, whom
	// smq dev runs PostgreSQL as when the test runs as root.
	data, err := os.MkdirTemp("", "smq-browser-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(data, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(data) })

	pgPort, httpAddr, grpcAddr, uiAddr := freePort(t), freeAddr(t), freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "dev", "--data", data, "--pg-port", pgPort,
		"--http-addr", httpAddr, "--temporal-grpc-addr", grpcAddr, "--temporal-ui-addr", uiAddr)
	cmd.Env = devEnv()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("smq dev did not stop within 30s of SIGTERM; its output:\n%s", logs.String())
		}
		if t.Failed() {
			t.Logf("smq dev output:\n%s", logs.String())
		}
	})

	node := &devNode{api: "http://" + httpAddr, ui: "http://" + uiAddr, bin: bin, pgPort: pgPort}
	start = time.Now()
	waitFor(t, 2*time.Minute, "smq dev to answer /readyz", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("smq dev exited (%v):\n%s", err, logs.String())
		default:
		}
		body, err := get(node.api + "/readyz")
		return err == nil, fmt.Sprint(err, " ", shorten(body))
	})
	t.Logf("smq dev ready in %s", time.Since(start).Round(time.Millisecond))
	return node
}

// devEnv is this process's environment without SMQ_* variables: smq
// refuses those it does not know (SMQ_WRITE_SCREENSHOTS is this test's, not
// the node's), and a developer's own settings must not point a node
// elsewhere.
func devEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SMQ_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitFor calls ok until it reports true, failing the test after timeout
// with the last reason ok gave.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, why := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, why)
		}
		<-tick.C
	}
}

func get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	return string(b), err
}

func shorten(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// freeAddr returns a loopback address no one listens on now, below the
// kernel's range for outgoing connections (see localpg.FreePorts).
func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", freePort(t))
}

func freePort(t *testing.T) string {
	port, err := localpg.FreePort()
	require.NoError(t, err)
	return strconv.Itoa(port)
}

// syncBuffer collects a child's output written from two pipes.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
