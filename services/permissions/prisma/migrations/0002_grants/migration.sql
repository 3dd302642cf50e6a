-- ECR's permission model: levels granted to users or groups on namespaces and repositories.
CREATE TABLE "grants" (
    "id" TEXT NOT NULL,
    "resource_type" TEXT NOT NULL,
    "resource_name" TEXT NOT NULL,
    "grantee_type" TEXT NOT NULL,
    "grantee" TEXT NOT NULL,
    "permission" TEXT NOT NULL,
    "owner" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "grants_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "grants_unique" ON "grants"("resource_type", "resource_name", "grantee_type", "grantee", "permission");
CREATE INDEX "grants_resource_name_idx" ON "grants"("resource_name");
