-- API token lifecycle: an optional expiry set at creation and the time a
-- token was last used (for `app token list` and rotation). last_used_at is
-- coarse on purpose: the app writes it only when the stored value is older
-- than a few minutes, so authentication does not write on every request.

-- +goose Up
ALTER TABLE api_tokens
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN last_used_at timestamptz,
    ADD CONSTRAINT api_tokens_expires_after_creation CHECK (expires_at IS NULL OR expires_at > created_at);

-- +goose Down
ALTER TABLE api_tokens
    DROP CONSTRAINT api_tokens_expires_after_creation,
    DROP COLUMN last_used_at,
    DROP COLUMN expires_at;
