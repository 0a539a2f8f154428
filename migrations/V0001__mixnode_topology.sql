-- Mixnode topology: one row per mixnode, written by the node itself when
-- DATABASE_URL is set (UPSERT at start-up, then last_seen every 10 s).
-- Clients pick routes from nodes whose last_seen is recent.
CREATE TABLE IF NOT EXISTS mixnode_topology (
    node_id     TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('entry', 'middle', 'exit')),
    mix_address TEXT NOT NULL,
    http_port   INTEGER NOT NULL CHECK (http_port BETWEEN 1 AND 65535),
    public_key  TEXT NOT NULL CHECK (public_key ~ '^[0-9a-f]{64}$'),
    version     TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS mixnode_topology_role_last_seen_idx
    ON mixnode_topology (role, last_seen DESC);
