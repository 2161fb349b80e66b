package postgres

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smq/smq/store"
)

const nodeCols = `id, region, version, started_at, last_heartbeat, status`

func scanNode(row pgx.CollectableRow) (*store.Node, error) {
	var n store.Node
	err := row.Scan(&n.ID, &n.Region, &n.Version, &n.StartedAt, &n.LastHeartbeat, &n.Status)
	return &n, err
}

// nodeCache remembers the last page NodeList read, for Options.NodeListTTL:
// health checks, which load balancers send often, list the nodes each time,
// and the query was about half of GET /v1/health's time. Every write to
// nodes through this Store empties it, so a node shows up at once on the
// node that registered it, and within the TTL on the others.
type nodeCache struct {
	mu    sync.Mutex
	gen   uint64    // counts writes; a read that spans one is not kept
	page  [2]int    // limit, offset
	at    time.Time // when nodes was read; zero when there is none
	nodes []*store.Node
}

func (c *nodeCache) get(limit, offset int, ttl time.Duration) ([]*store.Node, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || c.page != [2]int{limit, offset} || time.Since(c.at) >= ttl {
		return nil, c.gen, false
	}
	return cloneNodes(c.nodes), c.gen, true
}

// put keeps a page read after get returned gen, unless a write came since.
func (c *nodeCache) put(limit, offset int, gen uint64, at time.Time, nodes []*store.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		c.page, c.at, c.nodes = [2]int{limit, offset}, at, cloneNodes(nodes)
	}
}

// wrote empties the cache after a write to nodes has committed.
func (c *nodeCache) wrote() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.at, c.nodes = time.Time{}, nil
}

func cloneNodes(nodes []*store.Node) []*store.Node {
	out := slices.Clone(nodes)
	for i, n := range out {
		c := *n
		out[i] = &c
	}
	return out
}

// NodeHeartbeat implements store.Store.
func (s *Store) NodeHeartbeat(ctx context.Context, n *store.Node) error {
	started := n.StartedAt
	if started.IsZero() {
		started = time.Now()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO nodes (id, region, version, started_at, last_heartbeat, status)
		VALUES ($1, $2, $3, $4, now(), 'active')
		ON CONFLICT (id) DO UPDATE SET region = excluded.region, version = excluded.version,
			started_at = excluded.started_at, last_heartbeat = now(), status = 'active'`,
		n.ID, cmp.Or(n.Region, s.opts.Region), n.Version, started)
	s.nodes.wrote()
	return mapErr(err)
}

// NodeList implements store.Store. It serves a page it read less than
// Options.NodeListTTL ago, unless a write through this Store came since.
func (s *Store) NodeList(ctx context.Context, limit, offset int) ([]*store.Node, error) {
	nodes, gen, ok := s.nodes.get(limit, offset, s.opts.NodeListTTL)
	if ok {
		return nodes, nil
	}
	at := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT `+nodeCols+` FROM nodes ORDER BY id LIMIT $1 OFFSET $2`, limit, offset)
	if err != nil {
		return nil, mapErr(err)
	}
	nodes, err = pgx.CollectRows(rows, scanNode)
	if err != nil {
		return nil, mapErr(err)
	}
	s.nodes.put(limit, offset, gen, at, nodes)
	return nodes, nil
}

// NodeMarkStale implements store.Store.
func (s *Store) NodeMarkStale(ctx context.Context, olderThan time.Duration) ([]*store.Node, error) {
	rows, err := s.pool.Query(ctx, `UPDATE nodes SET status = 'stale'
		WHERE status = 'active' AND last_heartbeat < now() - $1::interval
		RETURNING `+nodeCols, olderThan)
	if err != nil {
		return nil, mapErr(err)
	}
	nodes, err := pgx.CollectRows(rows, scanNode)
	s.nodes.wrote() // after the rows are read: the UPDATE commits then
	return nodes, mapErr(err)
}

// NodeDelete implements store.Store.
func (s *Store) NodeDelete(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM nodes WHERE id = $1`, id)
	s.nodes.wrote()
	return mapErr(err)
}
