-- Portable between PostgreSQL and SQLite: times are Unix milliseconds (BIGINT), booleans are
-- BIGINT 0/1, names and emails are stored lowercase so unique constraints are case-insensitive.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    hash TEXT NOT NULL,
    name TEXT,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE INDEX tokens_account ON tokens (account_id, created_at);

CREATE TABLE subdomains (
    name TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL
);

CREATE INDEX subdomains_account ON subdomains (account_id, name);

CREATE TABLE tunnels (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    token_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    hostname TEXT NOT NULL,
    region TEXT NOT NULL,
    edge_id TEXT,
    session_id TEXT,
    agent_version TEXT,
    agent_addr TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    close_reason TEXT,
    closed_by_api BIGINT NOT NULL,
    grant_expires_at BIGINT NOT NULL,
    done_bytes_in BIGINT NOT NULL,
    done_bytes_out BIGINT NOT NULL,
    done_requests BIGINT NOT NULL,
    cur_bytes_in BIGINT NOT NULL,
    cur_bytes_out BIGINT NOT NULL,
    cur_requests BIGINT NOT NULL
);

CREATE INDEX tunnels_history ON tunnels (account_id, created_at, id);
CREATE INDEX tunnels_closed ON tunnels (region, closed_by_api, grant_expires_at);

CREATE TABLE edges (
    id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
