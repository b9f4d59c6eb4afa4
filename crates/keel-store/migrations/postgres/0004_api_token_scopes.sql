-- API tokens carry an id (shown and revoked by), the scopes they grant and an expiry.
-- Tokens issued before scopes existed were data tokens: they keep exactly what they allowed.
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
UPDATE api_tokens SET id = 'tok_' || substr(token_hash, 1, 12), scopes = 'data:read data:write' WHERE id IS NULL;
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
