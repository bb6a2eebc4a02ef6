-- Users, API keys, balances, jobs, the credit ledger, rate buckets and webhook dedup.
-- Written in Postgres DDL; api_stub.db.migrate maps the few column types SQLite lacks.
-- Timestamps are unix seconds (double precision) so queries are shared by both backends.

CREATE TABLE users (
  id UUID PRIMARY KEY,
  name TEXT NOT NULL,
  priority INT NOT NULL DEFAULT 0,
  created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE api_keys (
  key_hash TEXT PRIMARY KEY,           -- sha256 hex of the key; the key itself is never stored
  user_id UUID NOT NULL REFERENCES users(id),
  prefix TEXT NOT NULL,                -- first characters, to recognise a key in support
  created_at DOUBLE PRECISION NOT NULL,
  revoked_at DOUBLE PRECISION
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE balances (
  user_id UUID PRIMARY KEY REFERENCES users(id),
  available BIGINT NOT NULL CHECK (available >= 0),
  held BIGINT NOT NULL CHECK (held >= 0),
  updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE batches (
  id UUID PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES users(id),
  idempotency_key TEXT,
  request_hash TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  UNIQUE (user_id, idempotency_key)
);

CREATE TABLE jobs (
  id UUID PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES users(id),
  batch_id UUID REFERENCES batches(id),
  batch_index INT,
  type TEXT NOT NULL,
  params JSONB NOT NULL,
  input_urls JSONB NOT NULL,
  output_urls JSONB,
  status TEXT NOT NULL
    CHECK (status IN ('QUEUED', 'DISPATCHING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
  error TEXT,
  error_code TEXT,
  error_details JSONB,
  attempts INT NOT NULL DEFAULT 0,
  priority INT NOT NULL DEFAULT 0,
  cost BIGINT NOT NULL CHECK (cost >= 0),
  timeout_s INT NOT NULL,
  idempotency_key TEXT,
  request_hash TEXT,
  runpod_job_id TEXT,
  lease_owner TEXT,
  lease_until DOUBLE PRECISION,
  gpu_seconds DOUBLE PRECISION,
  worker_version TEXT,
  comfyui_version TEXT,
  models JSONB,
  worker_timings JSONB,
  result_source TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  dispatched_at DOUBLE PRECISION,
  running_at DOUBLE PRECISION,
  finished_at DOUBLE PRECISION,
  checked_at DOUBLE PRECISION,
  updated_at DOUBLE PRECISION NOT NULL,
  UNIQUE (user_id, idempotency_key)
);
CREATE INDEX jobs_queue ON jobs (priority DESC, created_at) WHERE status = 'QUEUED';
CREATE INDEX jobs_active ON jobs (status, lease_until) WHERE status IN ('DISPATCHING', 'RUNNING');
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE credit_ledger (
  id UUID PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES users(id),
  job_id UUID REFERENCES jobs(id),
  kind TEXT NOT NULL CHECK (kind IN ('grant', 'hold', 'capture', 'release')),
  delta BIGINT NOT NULL,               -- change of balances.available
  held_delta BIGINT NOT NULL,          -- change of balances.held
  note TEXT,
  created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id);
-- One hold per job, and one settlement (capture or release) per job: exactly-once billing.
CREATE UNIQUE INDEX credit_ledger_job_kind ON credit_ledger (job_id, kind) WHERE job_id IS NOT NULL;
CREATE UNIQUE INDEX credit_ledger_one_settlement ON credit_ledger (job_id)
  WHERE kind IN ('capture', 'release');

CREATE TABLE rate_buckets (
  user_id UUID PRIMARY KEY REFERENCES users(id),
  tokens DOUBLE PRECISION NOT NULL,
  updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE webhook_events (
  webhook_id TEXT PRIMARY KEY,
  job_id UUID NOT NULL REFERENCES jobs(id),
  outcome TEXT NOT NULL,
  received_at DOUBLE PRECISION NOT NULL
);
