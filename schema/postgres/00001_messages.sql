-- The first schema: messages from flush to ack, the nodes that serve them,
-- the channels they were sent on, and how far each node's buffer reached the
-- database.

-- +goose Up
CREATE TABLE messages (
    id               uuid        PRIMARY KEY,   -- made at ingest, before the flush
    channel          text        NOT NULL,
    payload          bytea       NOT NULL,      -- a JSON value, stored as sent
    status           text        NOT NULL CHECK (status IN ('PENDING', 'READY', 'ACQUIRED')),
    scheduled_at     timestamptz NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,   -- deliveries so far
    max_attempts     integer     NOT NULL DEFAULT 10,
    lease_token      uuid,                             -- the current lease, while ACQUIRED
    leased_until     timestamptz,
    acquired_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    region           text        NOT NULL,             -- whose scheduler and janitor own the row
    dedup_key        text,
    original_channel text,                             -- set when dead-lettered
    last_error       text
);

-- Each background query reads only its own rows (EXPLAIN checks are in
-- store/postgres/explain_test.go):
-- the scheduler: a region's PENDING rows, earliest first;
CREATE INDEX messages_pending_due ON messages (region, scheduled_at) WHERE status = 'PENDING';
-- the consumer: a channel's READY rows, local region first, in due order;
CREATE INDEX messages_ready ON messages (channel, region, scheduled_at) WHERE status = 'READY';
-- the janitor: a region's leases, by expiry.
CREATE INDEX messages_leased ON messages (region, leased_until) WHERE status = 'ACQUIRED';
-- A dedup key is unique within its channel for as long as its message lives.
CREATE UNIQUE INDEX messages_dedup ON messages (channel, dedup_key) WHERE dedup_key IS NOT NULL;

-- Channels that have received messages, so listing them needs no scan of
-- messages.
CREATE TABLE channels (
    name       text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id             text        PRIMARY KEY,
    region         text        NOT NULL,
    version        text        NOT NULL DEFAULT '',
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stale'))
);

-- A flush writes its batch and its node's watermark in one transaction, so
-- a WAL replayed after a crash skips what the database already has.
CREATE TABLE flush_marks (
    node_id    text        PRIMARY KEY,
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE flush_marks;
DROP TABLE nodes;
DROP TABLE channels;
DROP TABLE messages;
