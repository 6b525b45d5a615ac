-- API keys for the HTTP services. Only a SHA-256 of each key is stored; the key
-- itself is shown once, when it is created. (One migration set serves the whole
-- database, so it lives with the event store's.)
CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE,
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
