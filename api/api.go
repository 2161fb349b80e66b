// Package api is SMQ's HTTP interface: the producer, consumer, admin and
// health operations, registered on Huma (Register) and served on chi with
// request ids, access logs, panic recovery, API-key auth, Prometheus metrics
// and an offline docs page (NewHandler).
//
// Every error is an RFC 9457 problem. Store errors map as DESIGN.md says:
// store.ErrNotFound → 404, store.ErrConflict and store.ErrStaleLease → 409,
// store.ErrBufferFull → 429 with Retry-After, store.ErrStorageFull → 507,
// store.ErrUnavailable (or a database that does not answer in time) → 503
// with Retry-After.
package api

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smq/smq/store"
)

// APIVersion is the version of the HTTP API written into the OpenAPI
// document. It changes with the API, not with each build (Deps.Version).
const APIVersion = "1.0.0"

// Limits of the API, shared by the validation and the OpenAPI document.
const (
	// MaxAhead is how far ahead a message may be scheduled: 10 years.
	MaxAhead = 87660 * time.Hour
	// MaxWait is the longest long poll.
	MaxWait = 20 * time.Second
	// MaxVisibility is the longest lease.
	MaxVisibility = 12 * time.Hour
	// MaxBatch is the most messages per batch create, and ids per ack, nack
	// or extend.
	MaxBatch = 1000
)

// Deps is what the API works with. Store is required; every other field has
// a default.
type Deps struct {
	// Store is the database.
	Store store.Store
	// Buffer, when set, takes creates that have no dedup key and do not ask
	// for durability=committed; they reach the database with its flush.
	// Defaults to nil: every create writes straight to the database.
	Buffer store.Buffer
	// Notifier wakes long polls when messages of a channel become ready.
	// Defaults to nil: long polls re-check the database every half second.
	Notifier store.Notifier
	// Region is this node's region: messages created here belong to it and
	// its polls serve it first. Defaults to "default".
	Region string
	// NodeID names this node in health reports. Defaults to "local".
	NodeID string
	// Version is the build's version, reported by health. Defaults to "dev".
	Version string
	// Logger receives access logs and errors, each line of a request with
	// its request id. Defaults to discarding.
	Logger *slog.Logger
	// Keys are the accepted API keys; several may be valid at once, for
	// rotation. Defaults to none, which turns authentication off (smq dev).
	Keys []Key
	// Backoff is the nack retry delay when the consumer names none. Defaults
	// to 1 s, ×2 per attempt, capped at 1 h.
	Backoff store.Backoff
	// MaxPayload is the largest payload a message may carry, in bytes; a
	// larger one gets 413. Defaults to 1 MiB.
	MaxPayload int64
	// MaxBatchBytes is the largest batch-create body, in bytes; a larger one
	// gets 413. Defaults to 16 MiB.
	MaxBatchBytes int64
	// StoreTimeout bounds each database call of a request, so that a
	// database that stops answering yields a 503 rather than a hang.
	// Defaults to 10 s.
	StoreTimeout time.Duration
	// Health reports the state of this node's layers. Defaults to a report
	// that knows only the database (Store.Ping) and the buffer's gauges.
	Health HealthFunc
	// Registry receives the API's metrics and is served on /metrics, so
	// other parts register theirs on it too. Defaults to a new registry with
	// the Go and process collectors.
	Registry *prometheus.Registry
	// Draining, when closed, tells long polls that the node is stopping:
	// they answer at once with what they have, so that a graceful stop does
	// not wait out their full wait. Defaults to nil (never).
	Draining <-chan struct{}
	// Now is the clock for created_at, updated_at and scheduled times.
	// Defaults to time.Now.
	Now func() time.Time
}

// WithDefaults returns d with its unset fields filled.
func (d Deps) WithDefaults() Deps {
	d.Region = cmp.Or(d.Region, "default")
	d.NodeID = cmp.Or(d.NodeID, "local")
	d.Version = cmp.Or(d.Version, "dev")
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	d.Logger = slog.New(LogHandler(d.Logger.Handler()))
	d.Backoff.Base = cmp.Or(d.Backoff.Base, time.Second)
	d.Backoff.Factor = cmp.Or(d.Backoff.Factor, 2)
	d.Backoff.Cap = cmp.Or(d.Backoff.Cap, time.Hour)
	d.MaxPayload = cmp.Or(d.MaxPayload, 1<<20)
	d.MaxBatchBytes = cmp.Or(d.MaxBatchBytes, 16<<20)
	d.StoreTimeout = cmp.Or(d.StoreTimeout, 10*time.Second)
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
		d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// server holds the dependencies the operations share.
type server struct {
	d       Deps
	log     *slog.Logger
	metrics *metrics
	keys    *keyring
	// readTimeout is the server's Config.ReadTimeout, the bound on reading
	// a body (see registerWithBody); zero where there is no server.
	readTimeout time.Duration
}

// humaConfig is SMQ's Huma configuration: no `$schema` property and no
// `Link` header in responses (no link transformer), no built-in docs page
// (it loads its script from a CDN; NewHandler serves an offline one), the
// spec at /openapi.{json,yaml} and /openapi-3.0.{json,yaml}, and JSON
// written by jsonFormat.
func humaConfig() huma.Config {
	c := huma.DefaultConfig("SMQ", APIVersion)
	c.CreateHooks = nil
	c.Formats = map[string]huma.Format{"application/json": jsonFormat, "json": jsonFormat}
	c.DocsPath = ""
	c.SchemasPath = ""
	c.Info.Description = "SMQ is a scheduled message queue: producers hand it a message, a channel and a time; " +
		"at that time the message becomes available to the channel's consumers, who poll it, then ack it, " +
		"or nack it for a retry, until it succeeds or lands in the channel's dead-letter queue `<channel>.DLQ`.\n\n" +
		"Authenticate with the `api-key` header. Keys carry scopes: `produce`, `consume` and `admin` " +
		"(admin may call every operation). Each operation names the scope it needs."
	return c
}

// Register registers every SMQ operation on humaAPI, with the auth and
// metrics middleware they need. It panics if d.Store is nil.
func Register(humaAPI huma.API, d Deps) {
	register(humaAPI, d.WithDefaults(), 0)
}

func register(humaAPI huma.API, d Deps, readTimeout time.Duration) *server {
	if d.Store == nil {
		panic("api: Deps.Store is nil")
	}
	s := &server{
		d:       d,
		log:     d.Logger,
		metrics: newMetrics(d.Registry),
		keys:    newKeyring(d.Keys),

		readTimeout: readTimeout,
	}
	oapi := humaAPI.OpenAPI()
	if oapi.Components == nil {
		oapi.Components = &huma.Components{}
	}
	if oapi.Components.SecuritySchemes == nil {
		oapi.Components.SecuritySchemes = map[string]*huma.SecurityScheme{}
	}
	oapi.Components.SecuritySchemes[securityScheme] = &huma.SecurityScheme{
		Type:        "apiKey",
		In:          "header",
		Name:        "api-key",
		Description: "An API key. Its scopes (produce, consume, admin) decide which operations it may call.",
	}
	humaAPI.UseMiddleware(s.observe, s.authenticate)
	s.registerProducer(humaAPI)
	s.registerConsumer(humaAPI)
	s.registerHealth(humaAPI)
	return s
}

// NewHandler returns SMQ's whole HTTP handler: the operations of Register on
// chi, /metrics, the offline /docs page, /openapi.yaml and the rest of the
// spec endpoints, behind request-id, access-log and panic-recovery
// middleware.
func NewHandler(d Deps, cfg Config) http.Handler {
	d = d.WithDefaults()
	cfg = cfg.WithDefaults()
	router := chi.NewMux()
	router.Use(requestID, accessLog(d.Logger), recoverer(d.Logger))
	humaAPI := humachi.New(router, humaConfig())
	s := register(humaAPI, d, cfg.ReadTimeout)

	metricsHandler := promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{})
	if !cfg.PublicMetrics {
		metricsHandler = s.requireScope(ScopeAdmin, metricsHandler)
	}
	router.Method(http.MethodGet, "/metrics", metricsHandler)
	router.Get("/docs", serveDocsPage)
	router.Handle("/docs/assets/*", http.StripPrefix("/docs/assets/", docsAssets()))
	router.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path)
	})
	router.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
	})
	return router
}

// OpenAPI returns SMQ's OpenAPI document as Huma builds it (3.1).
func OpenAPI() *huma.OpenAPI {
	humaAPI := humachi.New(chi.NewMux(), humaConfig())
	Register(humaAPI, Deps{Store: nopStore{}, Registry: prometheus.NewRegistry()})
	return humaAPI.OpenAPI()
}

// OpenAPIYAML returns SMQ's OpenAPI document in its OpenAPI 3.0 form, as
// committed in api/openapi.yaml and printed by `smq openapi`.
func OpenAPIYAML() ([]byte, error) {
	return OpenAPI().DowngradeYAML()
}

// storeCtx bounds one database call of a request (see Deps.StoreTimeout).
func (s *server) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.d.StoreTimeout)
}

// now returns the clock's time at the database's precision.
func (s *server) now() time.Time {
	return s.d.Now().UTC().Truncate(time.Microsecond)
}
