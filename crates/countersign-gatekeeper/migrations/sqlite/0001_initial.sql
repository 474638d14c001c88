-- Version 1: the schema of the gatekeeper before versioned migrations, written so
-- that it adopts a database that schema created (every statement IF NOT EXISTS).

-- The audit log: one row per decision, in sequence order.
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    prev_sha256 BLOB NOT NULL,
    entry_sha256 BLOB NOT NULL,
    time_ms BIGINT NOT NULL,
    gatekeeper TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    operation BLOB NOT NULL,
    bucket BLOB NOT NULL,
    object_key BLOB NOT NULL,
    subject BLOB NOT NULL,
    decision TEXT NOT NULL,
    error_code TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    latency_us BIGINT NOT NULL,
    request BLOB NOT NULL,
    request_sha256 BLOB NOT NULL,
    request_length BIGINT NOT NULL,
    signatures BLOB NOT NULL,
    signatures_sha256 BLOB NOT NULL,
    signatures_length BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_time ON audit_log (time_ms);
CREATE INDEX IF NOT EXISTS audit_subject ON audit_log (subject);

-- The hash chain's signed checkpoints.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    body BLOB NOT NULL,
    signatures TEXT NOT NULL);

-- Used nonces, until their request's replay window closes.
CREATE TABLE IF NOT EXISTS nonces (
    nonce BLOB PRIMARY KEY,
    expires_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);

-- The object index: reservations ('pending') and stored objects.
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    state TEXT NOT NULL,
    storage_name TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    deadline BIGINT NOT NULL,
    size BIGINT NOT NULL,
    sha256 BLOB NOT NULL,
    content_type TEXT NOT NULL,
    stored_at BIGINT NOT NULL,
    manifest BLOB NOT NULL,
    manifest_signatures TEXT NOT NULL,
    PRIMARY KEY (bucket, object_key));
CREATE INDEX IF NOT EXISTS objects_pending ON objects (state, deadline);
-- Recovery looks every stored file's name up.
CREATE INDEX IF NOT EXISTS objects_storage ON objects (bucket, storage_name);

-- Every gatekeeper key that ever signed under a key id (one key per id).
CREATE TABLE IF NOT EXISTS gatekeeper_keys (
    key_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL);

-- The wrapped data keys of encrypted objects, one row per stored name.
CREATE TABLE IF NOT EXISTS object_keys (
    bucket TEXT NOT NULL,
    storage_name TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    header BLOB NOT NULL,
    PRIMARY KEY (bucket, storage_name));

-- The Merkle tree of the audit log: its state (size and right edge), its tiles and
-- its signed checkpoints.
CREATE TABLE IF NOT EXISTS tlog_state (
    id BIGINT PRIMARY KEY,
    size BIGINT NOT NULL,
    edge BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tlog_tiles (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (level, idx));
CREATE TABLE IF NOT EXISTS tlog_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL);
