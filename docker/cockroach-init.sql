-- Run once by the crdb-init service of compose.yaml after `cockroach init`:
-- the smq database with one region per node locality, so the messages table
-- (REGIONAL BY ROW after `smq migrate`) homes each row in its gateway's
-- region. Idempotent, so a restarted init job does no harm.
CREATE DATABASE IF NOT EXISTS smq;
ALTER DATABASE smq SET PRIMARY REGION "us-east1";
ALTER DATABASE smq ADD REGION IF NOT EXISTS "us-west1";
ALTER DATABASE smq ADD REGION IF NOT EXISTS "europe-west1";
