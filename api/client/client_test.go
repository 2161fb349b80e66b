package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api/client"
)

// generator is the pinned oapi-codegen; the //go:generate line in client.go
// names the same version.
const generator = "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.5.0"

// TestGeneratedClientIsFresh regenerates the client from the committed
// api/openapi.yaml into a temporary directory and fails when the committed
// client.gen.go differs, so the client never drifts from the spec.
func TestGeneratedClientIsFresh(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH: cannot regenerate the client to compare")
	}
	config, err := filepath.Abs("oapi-codegen.yaml")
	require.NoError(t, err)
	spec, err := filepath.Abs(filepath.Join("..", "openapi.yaml"))
	require.NoError(t, err)

	// The config writes client.gen.go relative to the working directory, so
	// running there writes the fresh copy into dir; outside the module, go
	// run uses exactly the pinned version.
	dir := t.TempDir()
	cmd := exec.Command(goBin, "run", generator, "-config", config, spec)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "running %s: %s", generator, out)

	want, err := os.ReadFile(filepath.Join(dir, "client.gen.go"))
	require.NoError(t, err)
	got, err := os.ReadFile("client.gen.go")
	require.NoError(t, err, "api/client/client.gen.go is missing; create it with: make generate (or go generate ./api/client)")
	if string(want) != string(got) {
		t.Fatalf("api/client/client.gen.go is stale (api/openapi.yaml or oapi-codegen.yaml changed since it was generated): %s\n"+
			"regenerate it with: make generate (or go generate ./api/client)", firstDifference(string(want), string(got)))
	}
}

func TestNewSendsAPIKeyAndCheckReadsProblems(t *testing.T) {
	var gotKey string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey = r.Header.Get(client.APIKeyHeader)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"title":"Unprocessable Entity","status":422,"detail":"validation failed",` +
			`"errors":[{"location":"query.max","message":"expected number <= 10000","value":20000}]}`))
	}))
	t.Cleanup(srv.Close)

	c, err := client.New(srv.URL, "secret")
	require.NoError(t, err)
	r, err := c.ChannelStatsWithResponse(context.Background(), "billing")
	require.NoError(t, err)
	require.Equal(t, "secret", gotKey)

	err = client.Check(r.HTTPResponse, r.Body)
	var e *client.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusUnprocessableEntity, e.StatusCode)
	require.Equal(t, "422 Unprocessable Entity: validation failed (query.max: expected number <= 10000)", err.Error())
}

func TestCheckAcceptsSuccessAndNamesNonProblemBodies(t *testing.T) {
	require.NoError(t, client.Check(&http.Response{StatusCode: http.StatusCreated}, nil))

	err := client.Check(&http.Response{StatusCode: http.StatusBadGateway}, []byte("<html>bad gateway</html>\n"))
	require.EqualError(t, err, "502 Bad Gateway: <html>bad gateway</html>")
}

func TestNewWithoutKeySendsNoHeader(t *testing.T) {
	sent := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := r.Header[http.CanonicalHeaderKey(client.APIKeyHeader)]
		sent <- ok
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(srv.Close)

	c, err := client.New(srv.URL, "")
	require.NoError(t, err)
	r, err := c.LivezWithResponse(context.Background())
	require.NoError(t, err)
	require.NoError(t, client.Check(r.HTTPResponse, r.Body))
	require.False(t, <-sent, "an empty key must not send an api-key header")
	require.Equal(t, "ok", r.JSON200.Status)
}

// firstDifference names the first line where the fresh and the committed
// file differ, so a failure says where without printing 100 KB.
func firstDifference(fresh, committed string) string {
	f, c := strings.Split(fresh, "\n"), strings.Split(committed, "\n")
	for i := range max(len(f), len(c)) {
		var fl, cl string
		if i < len(f) {
			fl = f[i]
		}
		if i < len(c) {
			cl = c[i]
		}
		if fl != cl {
			return fmt.Sprintf("first difference at line %d: generated %q, committed %q", i+1, fl, cl)
		}
	}
	return "files differ"
}
