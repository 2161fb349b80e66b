package api

import (
	"cmp"
	"fmt"
	"net/http"
	"time"
)

// Config tunes the HTTP server around the handler.
type Config struct {
	// ReadHeaderTimeout bounds reading a request's headers. Defaults to 10 s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; it must
	// leave room for a 16 MiB batch on a slow link. Defaults to 60 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its response; it must exceed the 20 s long poll. Defaults to 60 s.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its next
	// request. Defaults to 120 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers. Defaults to 64 KiB.
	MaxHeaderBytes int
	// PublicMetrics serves /metrics without a key. Defaults to false: when
	// keys are configured, /metrics needs a key with the admin scope, in the
	// api-key header or as `Authorization: Bearer <key>` (what Prometheus's
	// `authorization` scrape setting sends).
	PublicMetrics bool
}

// WithDefaults returns c with its unset fields filled.
func (c Config) WithDefaults() Config {
	c.ReadHeaderTimeout = cmp.Or(c.ReadHeaderTimeout, 10*time.Second)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, 60*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 60*time.Second)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, 120*time.Second)
	c.MaxHeaderBytes = cmp.Or(c.MaxHeaderBytes, 64<<10)
	return c
}

// Validate names the first setting that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.ReadHeaderTimeout < 0:
		return fmt.Errorf("ReadHeaderTimeout %s is negative", c.ReadHeaderTimeout)
	case c.ReadTimeout < 0:
		return fmt.Errorf("ReadTimeout %s is negative", c.ReadTimeout)
	case c.WriteTimeout <= MaxWait+5*time.Second:
		return fmt.Errorf("WriteTimeout %s must exceed the %s long poll by more than 5s", c.WriteTimeout, MaxWait)
	case c.IdleTimeout < 0:
		return fmt.Errorf("IdleTimeout %s is negative", c.IdleTimeout)
	case c.MaxHeaderBytes < 4<<10:
		return fmt.Errorf("MaxHeaderBytes %d is under 4096", c.MaxHeaderBytes)
	}
	return nil
}

// NewServer returns an http.Server for h on addr with cfg's timeouts.
func NewServer(addr string, h http.Handler, cfg Config) *http.Server {
	cfg = cfg.WithDefaults()
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
}
