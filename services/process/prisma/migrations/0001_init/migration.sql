-- REE processes (define/build with a strategy), each with a status, an owner, its input and output blobs.
CREATE TABLE "processes" (
    "uuid" TEXT NOT NULL,
    "tag" TEXT,
    "kind" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "owner_login" TEXT NOT NULL,
    "dockerfile" TEXT NOT NULL DEFAULT 'Dockerfile',
    "input_key" TEXT NOT NULL,
    "input_sha256" TEXT NOT NULL,
    "output_key" TEXT,
    "reason" TEXT,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),
    CONSTRAINT "processes_pkey" PRIMARY KEY ("uuid")
);
CREATE INDEX "processes_owner_id_created_at_idx" ON "processes"("owner_id", "created_at");

-- The process log, one row per line, readable while the process runs.
CREATE TABLE "process_logs" (
    "id" BIGSERIAL NOT NULL,
    "process_uuid" TEXT NOT NULL,
    "line" TEXT NOT NULL,
    CONSTRAINT "process_logs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "process_logs_process_uuid_fkey" FOREIGN KEY ("process_uuid") REFERENCES "processes"("uuid") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "process_logs_process_uuid_id_idx" ON "process_logs"("process_uuid", "id");
