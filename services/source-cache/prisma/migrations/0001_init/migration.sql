-- Cachito requests: one repository at one commit, with the package managers to resolve.
CREATE TABLE "requests" (
    "id" SERIAL NOT NULL,
    "repo" TEXT NOT NULL,
    "ref" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "owner_id" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "requests_pkey" PRIMARY KEY ("id")
);
