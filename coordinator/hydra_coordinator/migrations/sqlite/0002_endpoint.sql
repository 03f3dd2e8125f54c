-- Which OpenAI endpoint a request used: chat, completions (legacy) or embeddings.
ALTER TABLE telemetry ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat';
