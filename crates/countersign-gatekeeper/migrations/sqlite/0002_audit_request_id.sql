-- Version 2: audit entries of format version 2 carry the request id (the
-- X-Request-Id answer header). NULL marks an entry written as format version 1,
-- before the column existed; it keeps verifying as the bytes it was.
ALTER TABLE audit_log ADD COLUMN request_id BLOB;
