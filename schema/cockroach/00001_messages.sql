-- The first schema on CockroachDB: the same tables as on PostgreSQL, with
-- the locality that multi-region needs. The database must already be
-- multi-region (ALTER DATABASE ... SET PRIMARY REGION / ADD REGION; see
-- docker/cockroach-init.sql).
--
-- messages is REGIONAL BY ROW AS region: a row lives in the region of the
-- node that flushed it (the node sets region; it defaults to the gateway's),
-- so a region's scheduler, janitor and local-first polls read local ranges.
-- nodes, channels and flush_marks are small and read everywhere: GLOBAL.
-- The due-time indexes are hash-sharded, since time-ordered keys would put
-- every insert on one hot range.

-- +goose Up
CREATE TABLE messages (
    id               uuid        PRIMARY KEY,
    channel          text        NOT NULL,
    payload          bytea       NOT NULL,
    status           text        NOT NULL CHECK (status IN ('PENDING', 'READY', 'ACQUIRED')),
    scheduled_at     timestamptz NOT NULL,
    attempts         int4        NOT NULL DEFAULT 0,
    max_attempts     int4        NOT NULL DEFAULT 10,
    lease_token      uuid,
    leased_until     timestamptz,
    acquired_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    region           crdb_internal_region NOT NULL DEFAULT default_to_database_primary_region(gateway_region())::crdb_internal_region,
    dedup_key        text,
    original_channel text,
    last_error       text,
    INDEX messages_pending_due (region, scheduled_at) USING HASH WHERE status = 'PENDING',
    INDEX messages_ready (channel, region, scheduled_at) WHERE status = 'READY',
    INDEX messages_leased (region, leased_until) USING HASH WHERE status = 'ACQUIRED',
    UNIQUE INDEX messages_dedup (channel, dedup_key) WHERE dedup_key IS NOT NULL
) LOCALITY REGIONAL BY ROW AS region;

CREATE TABLE channels (
    name       text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
) LOCALITY GLOBAL;

CREATE TABLE nodes (
    id             text        PRIMARY KEY,
    region         text        NOT NULL,
    version        text        NOT NULL DEFAULT '',
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stale'))
) LOCALITY GLOBAL;

CREATE TABLE flush_marks (
    node_id    text        PRIMARY KEY,
    seq        int8        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
) LOCALITY GLOBAL;

-- +goose Down
DROP TABLE flush_marks;
DROP TABLE nodes;
DROP TABLE channels;
DROP TABLE messages;
