-- Which OpenAI endpoint a request used: chat (/v1/chat/completions), completions (the legacy
-- /v1/completions) or embeddings (/v1/embeddings). Rows from before are chat requests.
ALTER TABLE telemetry ADD COLUMN endpoint text NOT NULL DEFAULT 'chat';
