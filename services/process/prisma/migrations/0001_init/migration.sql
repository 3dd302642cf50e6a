-- REE processes (define/build with a strategy), each with a status and an owner.
CREATE TABLE "processes" (
    "uuid" TEXT NOT NULL,
    "tag" TEXT,
    "strategy" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "owner_id" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "processes_pkey" PRIMARY KEY ("uuid")
);
