-- ECR namespaces: the top of the app hierarchy (namespace / repository / version).
CREATE TABLE "namespaces" (
    "id" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "namespaces_pkey" PRIMARY KEY ("id")
);
