-- A name a tunnel got without asking for one (derived from its token) is held for the account
-- like a claim; `stable` = 1 marks those, so the API can say why the account holds the name.
ALTER TABLE subdomains ADD COLUMN stable BIGINT NOT NULL DEFAULT 0;
-- Who holds a name through a live grant is asked on every claim and grant.
CREATE INDEX tunnels_hostname ON tunnels (hostname, grant_expires_at);
