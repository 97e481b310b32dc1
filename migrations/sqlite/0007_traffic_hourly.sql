-- Proxy traffic rolled up by UTC hour and provider, for the dashboard's overview: how many
-- requests were forwarded (`RequestCompleted` usage events, bucketed by the request's own time),
-- how many of them were errors (status >= 400 or not delivered in full), the tokens they used,
-- and how many signed requests the gate refused (its `ProxyRequestRejected` and
-- `ProxyRejectionsSuppressed` audit records; the provider is not known for those, so they are
-- counted under provider ''). A week of charts reads at most 168 rows per provider, whatever the
-- traffic.
--
-- `hour` is the start of the hour, RFC 3339 text in UTC as sqlx writes it (so equal hours are
-- equal text and the primary key merges them).
CREATE TABLE IF NOT EXISTS traffic_hourly (
    hour       text    NOT NULL,
    provider   text    NOT NULL DEFAULT '',
    requests   integer NOT NULL DEFAULT 0,
    errors     integer NOT NULL DEFAULT 0,
    rejections integer NOT NULL DEFAULT 0,
    tokens_in  integer NOT NULL DEFAULT 0,
    tokens_out integer NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, provider)
) STRICT;

-- The overview's latest security events: the few audit entries that are not a success, newest
-- first, without walking past every proxied request the audit log also holds.
CREATE INDEX IF NOT EXISTS audit_log_security ON audit_log (position) WHERE outcome <> 'success';

-- The `traffic` projection replays the whole store into the new table. It has no checkpoint yet,
-- so it would start from the first event anyway; removing any stray one makes that certain.
DELETE FROM projection_checkpoints WHERE name = 'traffic';
