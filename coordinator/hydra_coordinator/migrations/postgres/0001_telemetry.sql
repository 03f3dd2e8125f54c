-- One row per answered request, and the feedback table (POST /v1/feedback).
CREATE TABLE telemetry (
    id                bigserial PRIMARY KEY,
    timestamp         timestamptz NOT NULL,          -- when the answer completed
    request_id        text NOT NULL UNIQUE,          -- the x-hydra-request-id header
    key_id            text,                          -- API key id (a digest prefix), never the key
    route             text NOT NULL,                 -- local | cloud
    backend           text NOT NULL,
    model             text NOT NULL,
    confidence        double precision,              -- that a local model suffices
    reasons           jsonb NOT NULL DEFAULT '[]',   -- the router's reasons (JSON array of text)
    prompt_tokens     integer,
    completion_tokens integer,
    cost_usd          double precision,              -- estimated from backends[].price_per_mtok
    latency_s         double precision NOT NULL,     -- to the last byte
    ttft_s            double precision,              -- to the first upstream byte
    status            integer NOT NULL,              -- HTTP status answered
    error_class       text,                          -- e.g. upstream_status, stream_timeout
    task_class        text,                          -- the router's task class (code, chat, ...)
    finish_reason     text,                          -- the upstream's (stop, length, ...)
    usage_estimated   boolean NOT NULL DEFAULT false, -- tokens counted here, not reported upstream
    cache_hit         boolean NOT NULL DEFAULT false,
    stream            boolean NOT NULL DEFAULT false,
    prompt            text                           -- only with telemetry.store_prompts
);
CREATE INDEX telemetry_timestamp_idx ON telemetry (timestamp);

CREATE TABLE feedback (
    id          bigserial PRIMARY KEY,
    timestamp   timestamptz NOT NULL DEFAULT now(),
    request_id  text NOT NULL,
    rating      double precision NOT NULL,       -- -1 (bad) .. 1 (good)
    comment     text,
    key_id      text
);
CREATE INDEX feedback_request_id_idx ON feedback (request_id);
