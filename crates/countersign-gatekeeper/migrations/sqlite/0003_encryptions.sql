-- Version 3: plaintext objects being moved to the encrypted form by `keys
-- encrypt-existing`. The row owns `new_name` (its files and its data key) until the
-- object's index row switches to it, in the same transaction that deletes this row.
CREATE TABLE encryptions (
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    old_name TEXT NOT NULL,
    new_name TEXT NOT NULL,
    PRIMARY KEY (bucket, object_key));
CREATE INDEX encryptions_new ON encryptions (bucket, new_name);
