package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/smq/smq/store"
)

// LayerStatus is how one layer of a node is doing.
type LayerStatus string

// The layer statuses.
const (
	Healthy  LayerStatus = "healthy"
	Degraded LayerStatus = "degraded"
	Down     LayerStatus = "down"
)

// Layer is the state of one layer of a node.
type Layer struct {
	Status LayerStatus `json:"status" enum:"healthy,degraded,down"`
	// Reason says why the layer is not healthy (or notes something about a
	// healthy one).
	Reason string `json:"reason,omitempty"`
}

// BufferLayer is the state of the buffer and its flush.
type BufferLayer struct {
	Status LayerStatus `json:"status" enum:"healthy,degraded,down"`
	Reason string      `json:"reason,omitempty"`
	// Kind is "memory", "wal", or "none" when creates write straight to
	// the database.
	Kind             string     `json:"kind"`
	Depth            int        `json:"depth" doc:"Buffered messages, in flight included."`
	Bytes            int64      `json:"bytes" doc:"Their payload size."`
	MaxDepth         int        `json:"max_depth"`
	MaxBytes         int64      `json:"max_bytes"`
	WALBytes         int64      `json:"wal_bytes" doc:"Write-ahead log size on disk (0 in memory)."`
	Flushed          int64      `json:"flushed" doc:"Messages flushed since start."`
	FlushErrors      int64      `json:"flush_errors" doc:"Failed flushes since start."`
	LastFlushSeconds float64    `json:"last_flush_seconds"`
	LastFlushAt      *time.Time `json:"last_flush_at,omitempty"`
	LastFlushError   string     `json:"last_flush_error,omitempty"`
	BatchSize        int        `json:"batch_size" doc:"Current flush batch size."`
}

// NewBufferLayer reports a buffer's gauges and its flusher's counters under
// status.
func NewBufferLayer(l Layer, b store.BufferStats, f store.FlushStats) BufferLayer {
	return BufferLayer{
		Status: l.Status, Reason: l.Reason,
		Kind: b.Kind, Depth: b.Depth, Bytes: b.Bytes, MaxDepth: b.MaxDepth, MaxBytes: b.MaxBytes, WALBytes: b.WALBytes,
		Flushed: f.Flushed, FlushErrors: f.Errors, LastFlushSeconds: f.LastDuration.Seconds(),
		LastFlushAt: timePtr(f.LastAt), LastFlushError: f.LastError, BatchSize: f.BatchSize,
	}
}

// Layers are the layers of a node.
type Layers struct {
	Producer  Layer       `json:"producer"`
	Consumer  Layer       `json:"consumer"`
	Buffer    BufferLayer `json:"buffer"`
	Scheduler Layer       `json:"scheduler"`
	Janitor   Layer       `json:"janitor"`
	Database  Layer       `json:"database"`
	Temporal  Layer       `json:"temporal"`
}

// NodeHealth is this node's state, as the process that runs the layers
// knows it.
type NodeHealth struct {
	// Ready is true once the node may take traffic: its buffer is replayed
	// and the database answers. /readyz answers 503 until then.
	Ready bool
	// NotReady says why the node is not ready.
	NotReady string
	Layers   Layers
}

// HealthFunc reports this node's state. It is called for every /v1/health
// and /readyz request, so it reads gauges rather than doing slow work.
type HealthFunc func(ctx context.Context) NodeHealth

// NodeStatus sums up a node's layers: down when the database is (nothing
// can be accepted nor delivered), degraded when any layer is not healthy
// (ingest and consumption of ready messages go on), else healthy.
func NodeStatus(l Layers) LayerStatus {
	if l.Database.Status == Down {
		return Down
	}
	for _, st := range []LayerStatus{l.Producer.Status, l.Consumer.Status, l.Buffer.Status, l.Scheduler.Status, l.Janitor.Status, l.Temporal.Status} {
		if st != Healthy {
			return Degraded
		}
	}
	return Healthy
}

// defaultHealth knows what the API can see: the database and the buffer's
// gauges. The background layers run elsewhere; cmd wires a HealthFunc that
// knows them.
func (s *server) defaultHealth(ctx context.Context) NodeHealth {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	db := Layer{Status: Healthy}
	if err := s.d.Store.Ping(ctx); err != nil {
		db = Layer{Status: Down, Reason: "ping: " + err.Error()}
	}
	buffer := BufferLayer{Status: Healthy, Kind: "none", Reason: "no buffer: creates write to the database"}
	if s.d.Buffer != nil {
		buffer = NewBufferLayer(Layer{Status: Healthy}, s.d.Buffer.Stats(), store.FlushStats{})
	}
	unknown := Layer{Status: Degraded, Reason: "not reported to the API on this node"}
	h := NodeHealth{Ready: db.Status == Healthy, Layers: Layers{
		Producer: db, Consumer: db, Buffer: buffer, Database: db,
		Scheduler: unknown, Janitor: unknown, Temporal: unknown,
	}}
	if !h.Ready {
		h.NotReady = "database: " + db.Reason
	}
	return h
}

func (s *server) health(ctx context.Context) NodeHealth {
	if s.d.Health != nil {
		return s.d.Health(ctx)
	}
	return s.defaultHealth(ctx)
}

// NodeOut is a registered node.
type NodeOut struct {
	NodeID        string    `json:"node_id"`
	Region        string    `json:"region"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Status        string    `json:"status" enum:"active,stale"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
}

// ThisNode is the state of the node that answers.
type ThisNode struct {
	NodeID  string      `json:"node_id"`
	Region  string      `json:"region"`
	Version string      `json:"version"`
	Status  LayerStatus `json:"status" enum:"healthy,degraded,down"`
	Ready   bool        `json:"ready"`
	Layers  Layers      `json:"layers"`
}

type healthInput struct {
	Limit  int `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Nodes per page."`
	Offset int `query:"offset" minimum:"0" default:"0"`
}

type healthOutput struct {
	Body struct {
		Nodes      []NodeOut  `json:"nodes" doc:"Registered nodes, by id."`
		Pagination Pagination `json:"pagination"`
		Node       ThisNode   `json:"node" doc:"The node that answers, layer by layer."`
	}
}

type probeOutput struct {
	Body struct {
		Status string `json:"status" example:"ok"`
	}
}

func (s *server) registerHealth(a huma.API) {
	huma.Register(a, huma.Operation{
		OperationID: "health",
		Method:      http.MethodGet,
		Path:        "/v1/health",
		Summary:     "Cluster and node health",
		Description: "The registered nodes, and the state of each layer of the node that answers.",
		Tags:        []string{"admin"},
		Security:    needs(ScopeAdmin),
		Errors:      []int{401, 403, 422, 503},
	}, s.healthOp)

	huma.Register(a, huma.Operation{
		OperationID: "livez",
		Method:      http.MethodGet,
		Path:        "/livez",
		Summary:     "Liveness probe",
		Description: "200 while the process serves HTTP. Needs no key.",
		Tags:        []string{"admin"},
	}, func(context.Context, *struct{}) (*probeOutput, error) {
		out := &probeOutput{}
		out.Body.Status = "ok"
		return out, nil
	})

	huma.Register(a, huma.Operation{
		OperationID: "readyz",
		Method:      http.MethodGet,
		Path:        "/readyz",
		Summary:     "Readiness probe",
		Description: "200 once the node's buffer is replayed and the database answers; 503 otherwise. Needs no key.",
		Tags:        []string{"admin"},
		Errors:      []int{503},
	}, func(ctx context.Context, _ *struct{}) (*probeOutput, error) {
		h := s.health(ctx)
		if !h.Ready {
			reason := strings.TrimSpace(h.NotReady)
			if reason == "" {
				reason = "starting"
			}
			return nil, huma.Error503ServiceUnavailable("not ready: " + reason)
		}
		out := &probeOutput{}
		out.Body.Status = "ready"
		return out, nil
	})
}

func (s *server) healthOp(ctx context.Context, in *healthInput) (*healthOutput, error) {
	out := &healthOutput{}
	h := s.health(ctx)
	out.Body.Node = ThisNode{
		NodeID: s.d.NodeID, Region: s.d.Region, Version: s.d.Version,
		Status: NodeStatus(h.Layers), Ready: h.Ready, Layers: h.Layers,
	}
	out.Body.Nodes = []NodeOut{}
	out.Body.Pagination = Pagination{Limit: in.Limit, Offset: in.Offset}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	nodes, err := s.d.Store.NodeList(sctx, in.Limit, in.Offset)
	if err != nil {
		// The node's own report is what matters most when the database is
		// down; the list stays empty and the database layer says why.
		s.log.WarnContext(ctx, "health: node list", "err", err)
		return out, nil
	}
	for _, n := range nodes {
		out.Body.Nodes = append(out.Body.Nodes, NodeOut{
			NodeID: n.ID, Region: n.Region, LastHeartbeat: n.LastHeartbeat.UTC(),
			Status: n.Status, Version: n.Version, StartedAt: n.StartedAt.UTC(),
		})
	}
	out.Body.Pagination.Count = len(nodes)
	return out, nil
}
