-- What the nodes of a cluster need to keep checking nonces soundly while NATS is unreachable.
-- Times are microseconds since the Unix epoch, as each node's clock reads them (the nodes' clocks
-- are assumed in step, as the signed requests' freshness window already assumes).

-- Every node, as it last announced itself: when, and the latest fallback epoch it has joined
-- (after handing over the nonces it accepted through NATS).
CREATE TABLE IF NOT EXISTS gate_nodes (
    node_id    text   PRIMARY KEY,
    seen_at    bigint NOT NULL,
    epoch_seen bigint NOT NULL
);

-- The cluster's fallback: its epoch (raised when a fallback begins) and the last moment a node
-- could not reach NATS. Every node checks nonces here too until long enough after that moment
-- that any nonce accepted without NATS is outside every freshness window.
CREATE TABLE IF NOT EXISTS gate_fallback (
    id               integer PRIMARY KEY CHECK (id = 1),
    epoch            bigint  NOT NULL,
    last_fallback_at bigint  NOT NULL
);

-- Nonces used during a fallback (and those handed over when it began), until they expire.
CREATE TABLE IF NOT EXISTS gate_nonces (
    nonce_key  text   PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS gate_nonces_by_expiry ON gate_nonces (expires_at);
