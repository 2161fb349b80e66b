package postgres

import (
	"cmp"
	"context"
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
	return mapErr(err)
}

// NodeList implements store.Store.
func (s *Store) NodeList(ctx context.Context, limit, offset int) ([]*store.Node, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+nodeCols+` FROM nodes ORDER BY id LIMIT $1 OFFSET $2`, limit, offset)
	if err != nil {
		return nil, mapErr(err)
	}
	nodes, err := pgx.CollectRows(rows, scanNode)
	return nodes, mapErr(err)
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
	return nodes, mapErr(err)
}

// NodeDelete implements store.Store.
func (s *Store) NodeDelete(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM nodes WHERE id = $1`, id)
	return mapErr(err)
}
