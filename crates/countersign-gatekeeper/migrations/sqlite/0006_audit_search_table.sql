-- Version 6: the audit search's columns and indexes move out of the append path.
--
-- Every append used to update eleven b-trees of `audit_log` (the table, its primary
-- key and nine search indexes) besides the nonce's; each page it dirtied was a WAL
-- frame of the request's transaction. Now `audit_log` keeps only its primary key, and
-- `audit_search` holds each integrated entry's search columns under the indexes of
-- version 5: the integrator fills it in the transaction that extends the Merkle tree
-- over the same entries, so its rows are exactly the entries below the tree size
-- (`tlog_state.size`), in batches. A search reads `audit_search` below the tree size
-- and the (at most one `checkpoint_interval` long) tail of `audit_log` above it.
CREATE TABLE audit_search (
    seq INTEGER PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    client_ip TEXT NOT NULL,
    operation BLOB NOT NULL,
    bucket BLOB NOT NULL,
    object_key BLOB NOT NULL,
    subject BLOB NOT NULL,
    decision TEXT NOT NULL,
    error_code TEXT NOT NULL);
INSERT INTO audit_search (seq, time_ms, client_ip, operation, bucket, object_key, subject,
    decision, error_code)
SELECT seq, time_ms, client_ip, operation, bucket, object_key, subject, decision, error_code
FROM audit_log WHERE seq < COALESCE((SELECT size FROM tlog_state WHERE id = 1), 0);
DROP INDEX IF EXISTS audit_time;
DROP INDEX IF EXISTS audit_subject;
DROP INDEX IF EXISTS audit_subject_seq;
DROP INDEX IF EXISTS audit_client_ip_seq;
DROP INDEX IF EXISTS audit_bucket_seq;
DROP INDEX IF EXISTS audit_key_seq;
DROP INDEX IF EXISTS audit_bucket_key;
DROP INDEX IF EXISTS audit_operation_seq;
DROP INDEX IF EXISTS audit_decision_seq;
DROP INDEX IF EXISTS audit_error_seq;
-- `seq` is the rowid here, so every index ends with it: `(subject)` is `(subject, seq)`.
CREATE INDEX audit_search_time ON audit_search (time_ms);
CREATE INDEX audit_search_subject ON audit_search (subject);
CREATE INDEX audit_search_client_ip ON audit_search (client_ip);
CREATE INDEX audit_search_bucket ON audit_search (bucket);
CREATE INDEX audit_search_key ON audit_search (object_key);
CREATE INDEX audit_search_bucket_key ON audit_search (bucket, object_key);
CREATE INDEX audit_search_operation ON audit_search (operation);
CREATE INDEX audit_search_decision ON audit_search (decision);
CREATE INDEX audit_search_error ON audit_search (error_code);

