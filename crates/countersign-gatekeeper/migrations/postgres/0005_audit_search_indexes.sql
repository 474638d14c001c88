-- Version 5: indexes for the audit search (`GET /v1/audit/search`). A search reads
-- `WHERE seq >= ? AND <filters> ORDER BY seq LIMIT ?`; each index leads with a
-- filtered column and ends with `seq`, so a page is read in order from the index
-- without sorting every match; a key prefix is a range of `audit_key_seq`, or of
-- `audit_bucket_key` with a bucket (one object's history). The single-column subject
-- index of version 1 is superseded.
DROP INDEX IF EXISTS audit_subject;
CREATE INDEX audit_subject_seq ON audit_log (subject, seq);
CREATE INDEX audit_client_ip_seq ON audit_log (client_ip, seq);
CREATE INDEX audit_bucket_seq ON audit_log (bucket, seq);
CREATE INDEX audit_key_seq ON audit_log (object_key, seq);
CREATE INDEX audit_bucket_key ON audit_log (bucket, object_key, seq);
CREATE INDEX audit_operation_seq ON audit_log (operation, seq);
CREATE INDEX audit_decision_seq ON audit_log (decision, seq);
CREATE INDEX audit_error_seq ON audit_log (error_code, seq);
