-- Version 4: witnesses' cosignatures of the tree checkpoints. One row per checkpoint
-- size and witness key (its vkey, `name+keyid+key`); a newer cosignature of the same
-- checkpoint by the same witness replaces the older one. `time` is the cosignature's
-- own timestamp (POSIX seconds), `line` the signature line as the witness sent it.
CREATE TABLE tlog_cosignatures (
    size BIGINT NOT NULL,
    witness TEXT NOT NULL,
    time BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (size, witness));
