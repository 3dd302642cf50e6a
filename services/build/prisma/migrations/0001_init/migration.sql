-- Image builds of every kind (ECR app, Kabuto image, process environment).
CREATE TABLE "builds" (
    "id" TEXT NOT NULL,
    "queue_id" SERIAL NOT NULL,
    "kind" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "owner" TEXT,
    "namespace" TEXT,
    "name" TEXT,
    "version" TEXT,
    "number" INTEGER,
    "spec" JSONB NOT NULL,
    "nocache" BOOLEAN NOT NULL DEFAULT false,
    "push" BOOLEAN NOT NULL DEFAULT true,
    "platforms" JSONB NOT NULL DEFAULT '[]',
    "error_source" TEXT,
    "error" TEXT,
    "image" TEXT,
    "digest" TEXT,
    "image_id" INTEGER,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "worker" TEXT,
    "abort_requested" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),
    "heartbeat_at" TIMESTAMP(3),
    CONSTRAINT "builds_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "builds_ecr_number_key" ON "builds"("namespace", "name", "version", "number");
CREATE INDEX "builds_state_idx" ON "builds"("state");
CREATE INDEX "builds_owner_kind_idx" ON "builds"("owner", "kind");

-- Build output, one row per line, appended as it arrives (durable; outlives the worker).
CREATE TABLE "build_logs" (
    "seq" BIGSERIAL NOT NULL,
    "build_id" TEXT NOT NULL,
    "platform" TEXT,
    "line" TEXT NOT NULL,
    CONSTRAINT "build_logs_pkey" PRIMARY KEY ("seq")
);
CREATE INDEX "build_logs_build_seq_idx" ON "build_logs"("build_id", "seq");

-- Kabuto images, created when their build succeeds.
CREATE TABLE "images" (
    "id" SERIAL NOT NULL,
    "owner" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "dockerfile" TEXT,
    "build_id" TEXT NOT NULL,
    "reference" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "images_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "images_build_id_key" ON "images"("build_id");
CREATE INDEX "images_owner_idx" ON "images"("owner");
