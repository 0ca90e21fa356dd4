-- Custom domains: a hostname an account proves it owns with a TXT record at
-- _warren-challenge.<hostname> and points at a region with a CNAME. Hostnames are stored
-- lowercase, so the unique constraint is case-insensitive: one hostname, one account.
CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    hostname TEXT NOT NULL UNIQUE,
    region TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    verified_at BIGINT,
    last_check_at BIGINT,
    last_error TEXT
);

CREATE INDEX domains_account ON domains (account_id, hostname);
