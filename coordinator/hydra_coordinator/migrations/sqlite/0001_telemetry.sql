-- The same schema as PostgreSQL's. Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff', so
-- `WHERE timestamp > datetime('now', '-1 hour')` works; reasons is a JSON array.
CREATE TABLE telemetry (
    id                INTEGER PRIMARY KEY,
    timestamp         TEXT NOT NULL,
    request_id        TEXT NOT NULL UNIQUE,
    key_id            TEXT,
    route             TEXT NOT NULL,
    backend           TEXT NOT NULL,
    model             TEXT NOT NULL,
    confidence        REAL,
    reasons           TEXT NOT NULL DEFAULT '[]',
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          REAL,
    latency_s         REAL NOT NULL,
    ttft_s            REAL,
    status            INTEGER NOT NULL,
    error_class       TEXT,
    task_class        TEXT,
    finish_reason     TEXT,
    usage_estimated   INTEGER NOT NULL DEFAULT 0,
    cache_hit         INTEGER NOT NULL DEFAULT 0,
    stream            INTEGER NOT NULL DEFAULT 0,
    prompt            TEXT
);
CREATE INDEX telemetry_timestamp_idx ON telemetry (timestamp);

CREATE TABLE feedback (
    id          INTEGER PRIMARY KEY,
    timestamp   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    request_id  TEXT NOT NULL,
    rating      REAL NOT NULL,
    comment     TEXT,
    key_id      TEXT
);
CREATE INDEX feedback_request_id_idx ON feedback (request_id);
