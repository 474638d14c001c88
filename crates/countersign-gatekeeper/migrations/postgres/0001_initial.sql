-- Version 1: the schema of the gatekeeper before versioned migrations, written so
-- that it adopts a database that schema created (every statement IF NOT EXISTS).

-- The audit log: one row per decision, in sequence order.
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    prev_sha256 BYTEA NOT NULL,
    entry_sha256 BYTEA NOT NULL,
    time_ms BIGINT NOT NULL,
    gatekeeper TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    operation BYTEA NOT NULL,
    bucket BYTEA NOT NULL,
    object_key BYTEA NOT NULL,
    subject BYTEA NOT NULL,
    decision TEXT NOT NULL,
    error_code TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    latency_us BIGINT NOT NULL,
    request BYTEA NOT NULL,
    request_sha256 BYTEA NOT NULL,
    request_length BIGINT NOT NULL,
    signatures BYTEA NOT NULL,
    signatures_sha256 BYTEA NOT NULL,
    signatures_length BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_time ON audit_log (time_ms);
CREATE INDEX IF NOT EXISTS audit_subject ON audit_log (subject);

-- The hash chain's signed checkpoints.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    body BYTEA NOT NULL,
    signatures TEXT NOT NULL);

-- Used nonces, until their request's replay window closes.
CREATE TABLE IF NOT EXISTS nonces (
    nonce BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);

-- The object index: reservations ('pending') and stored objects.
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    object_key TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    storage_name TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    deadline BIGINT NOT NULL,
    size BIGINT NOT NULL,
    sha256 BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    stored_at BIGINT NOT NULL,
    manifest BYTEA NOT NULL,
    manifest_signatures TEXT NOT NULL,
    PRIMARY KEY (bucket, object_key));
CREATE INDEX IF NOT EXISTS objects_pending ON objects (state, deadline);
-- Recovery looks every stored file's name up.
CREATE INDEX IF NOT EXISTS objects_storage ON objects (bucket, storage_name);

-- Every gatekeeper key that ever signed under a key id (one key per id).
CREATE TABLE IF NOT EXISTS gatekeeper_keys (
    key_id TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL);

-- The wrapped data keys of encrypted objects, one row per stored name.
CREATE TABLE IF NOT EXISTS object_keys (
    bucket TEXT NOT NULL,
    storage_name TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    header BYTEA NOT NULL,
    PRIMARY KEY (bucket, storage_name));

-- The Merkle tree of the audit log: its state (size and right edge), its tiles and
-- its signed checkpoints.
CREATE TABLE IF NOT EXISTS tlog_state (
    id BIGINT PRIMARY KEY,
    size BIGINT NOT NULL,
    edge BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tlog_tiles (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hashes BYTEA NOT NULL,
    PRIMARY KEY (level, idx));
CREATE TABLE IF NOT EXISTS tlog_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL);
