-- Kabuto pipelines: ordered lists of jobs owned by one user. Ids are integers, as Kabuto's were.
CREATE TABLE "pipelines" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "owner_login" TEXT NOT NULL,
    "run" INTEGER NOT NULL DEFAULT 0,
    "lease_owner" TEXT,
    "lease_until" TIMESTAMP(3),
    "finished_run" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "pipelines_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "pipelines_owner_id_idx" ON "pipelines"("owner_id");

-- Jobs: a command run in a container, in pipeline order (position).
CREATE TABLE "jobs" (
    "id" SERIAL NOT NULL,
    "pipeline_id" INTEGER NOT NULL,
    "position" INTEGER NOT NULL,
    "owner_id" TEXT NOT NULL,
    "command" TEXT NOT NULL,
    "image_id" TEXT NOT NULL,
    "image_ref" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'ready',
    "reason" TEXT,
    "exit_code" INTEGER,
    "timeout" INTEGER NOT NULL,
    "memory" BIGINT NOT NULL,
    "nano_cpus" BIGINT NOT NULL,
    "env" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "network" BOOLEAN NOT NULL DEFAULT false,
    "retries" INTEGER NOT NULL DEFAULT 0,
    "attachments" JSONB NOT NULL DEFAULT '[]',
    "used_cpu" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "used_memory" BIGINT NOT NULL DEFAULT 0,
    "used_io" BIGINT NOT NULL DEFAULT 0,
    "container_id" TEXT,
    "engine_id" TEXT,
    "kill_requested" TEXT,
    "result_key" TEXT,
    "log_base" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),
    CONSTRAINT "jobs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "jobs_state_check" CHECK ("state" IN ('ready', 'in_queue', 'running', 'done', 'failed', 'killed')),
    CONSTRAINT "jobs_pipeline_id_fkey" FOREIGN KEY ("pipeline_id") REFERENCES "pipelines"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "jobs_pipeline_id_position_idx" ON "jobs"("pipeline_id", "position");
CREATE INDEX "jobs_state_idx" ON "jobs"("state");

-- Log lines, stored as they arrive; ids grow with arrival, so "after <id>" never re-reads a line.
CREATE TABLE "job_logs" (
    "id" BIGSERIAL NOT NULL,
    "job_id" INTEGER NOT NULL,
    "line" TEXT NOT NULL,
    CONSTRAINT "job_logs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "job_logs_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "job_logs_job_id_id_idx" ON "job_logs"("job_id", "id");
