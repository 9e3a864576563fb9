-- Platform tables: API tokens and the generic task queue the worker pool
-- drains. See docs/schema.md for which query uses which index.

-- +goose Up
CREATE TABLE api_tokens (
    -- id is the public half of a token ("fts_<id>_<secret>"): it is looked up,
    -- then the secret's hash is compared in constant time.
    id           text PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- SHA-256 of the secret half. Tokens carry 256 random bits, so a fast hash
    -- is enough: there is nothing to brute-force.
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE tasks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    payload          jsonb NOT NULL DEFAULT '{}',
    -- At most one live (queued or running) task per (kind, dedupe_key).
    dedupe_key       text,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'dead')),
    -- Failed attempts so far (a reschedule is not a failure).
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts > 0),
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- A random token per claim: only the holder may heartbeat or finish.
    lease_token      text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- Claim path: the oldest due queued task of the handled kinds.
CREATE INDEX tasks_queued_due ON tasks (run_at, id) WHERE state = 'queued';
-- Reclaim path: running tasks whose lease expired (a crashed instance).
CREATE INDEX tasks_running_lease ON tasks (lease_expires_at) WHERE state = 'running';
-- Dedupe: one live task per key; also serves lookups by key.
CREATE UNIQUE INDEX tasks_live_dedupe ON tasks (kind, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');

-- +goose Down
DROP TABLE tasks;
DROP TABLE api_tokens;
