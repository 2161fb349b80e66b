package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The raw client must read every framing net/http's server may answer
// with, and keep using (or replace) its connection as it should.
func TestRawConn(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		}
		switch r.URL.Path {
		case "/get":
			require.Equal(t, http.MethodGet, r.Method)
			require.Empty(t, r.Header.Get("Content-Type"))
			require.Empty(t, body)
			w.Write([]byte("got " + r.URL.RawQuery))
		case "/sized":
			w.WriteHeader(http.StatusCreated)
			w.Write(append([]byte("echo "), body...))
		case "/chunked":
			w.Header().Set("Trailer", "X-Done")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
			w.Header().Set("X-Done", "yes")
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c, err := newRawConn(srv.URL)
	require.NoError(t, err)
	defer c.close()
	ctx := context.Background()
	for range 3 {
		code, body, err := c.post(ctx, "/sized", []byte(`{"a":1}`))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, code)
		require.Equal(t, `echo {"a":1}`, string(body))

		code, body, err = c.post(ctx, "/chunked", []byte(`{}`))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "part one, part two", string(body))

		code, body, err = c.do(ctx, http.MethodGet, "/get?max=1", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "got max=1", string(body))
	}
	require.Equal(t, int32(1), conns.Load(), "one keep-alive connection for nine requests")

	code, _, err := c.post(ctx, "/close", []byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, code)
	code, _, err = c.post(ctx, "/sized", []byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	require.Equal(t, int32(2), conns.Load(), "a new connection after Connection: close")
}
