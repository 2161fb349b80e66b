package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// rawConn sends requests over one keep-alive HTTP/1.1 connection, writing
// each request and reading its response on the caller's goroutine, as wrk
// does. net/http's client hands every request to two goroutines of its
// own; on two cores shared with the server, that cost is the load
// generator's, not SMQ's. The throughput workload drives SMQ with it, and
// shows one run with net/http's client beside it.
type rawConn struct {
	addr string // host:port
	conn net.Conn
	br   *bufio.Reader
	buf  []byte
}

func newRawConn(base string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("raw client: %s: only http", base)
	}
	return &rawConn{addr: u.Host}, nil
}

// rawRequestTimeout bounds one request, as the net/http client's Timeout
// does.
const rawRequestTimeout = 60 * time.Second

// post sends POST path with a JSON body and returns the status and body.
func (c *rawConn) post(ctx context.Context, path string, body []byte) (int, []byte, error) {
	return c.do(ctx, http.MethodPost, path, body)
}

// do sends a request, with a JSON body unless body is nil, and returns the
// status and body, as smqClient.do does.
func (c *rawConn) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	code, resp, err := c.roundTrip(method, path, body)
	if err != nil {
		c.close()
	}
	return code, resp, err
}

func (c *rawConn) roundTrip(method, path string, body []byte) (int, []byte, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	if err := c.conn.SetDeadline(time.Now().Add(rawRequestTimeout)); err != nil {
		return 0, nil, err
	}
	b := append(c.buf[:0], method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	if body != nil {
		b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	if _, err := c.conn.Write(b); err != nil {
		return 0, nil, err
	}
	return c.readResponse()
}

// readResponse reads a status line, the headers and a body framed by
// Content-Length or chunked; a response that asks to close the connection
// closes it after.
func (c *rawConn) readResponse() (int, []byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("raw client: bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("raw client: bad status line %q", line)
	}
	length, chunked, closing := -1, false, false
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, fmt.Errorf("raw client: bad header %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, fmt.Errorf("raw client: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	var body []byte
	switch {
	case chunked:
		if body, err = io.ReadAll(httputil.NewChunkedReader(c.br)); err == nil {
			err = c.skipTrailer()
		}
	case length >= 0:
		body = make([]byte, length)
		_, err = io.ReadFull(c.br, body)
	default:
		err = errors.New("raw client: a response without Content-Length or chunked framing")
	}
	if err != nil {
		return 0, nil, err
	}
	if closing {
		c.close()
	}
	return code, body, nil
}

// skipTrailer reads the lines after a chunked body, up to the empty one.
func (c *rawConn) skipTrailer() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

func (c *rawConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
