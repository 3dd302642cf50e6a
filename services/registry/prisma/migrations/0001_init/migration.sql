-- ECR's hierarchy: namespace / repository / app version.
CREATE TABLE "namespaces" (
    "id" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "namespaces_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "repositories" (
    "namespace" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "repositories_pkey" PRIMARY KEY ("namespace", "name"),
    CONSTRAINT "repositories_namespace_fkey" FOREIGN KEY ("namespace") REFERENCES "namespaces"("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- body: the app as GET returns it (JSON text), so a read is one row and no serialization.
CREATE TABLE "apps" (
    "id" TEXT NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "namespace" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "repository" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "frozen" BOOLEAN NOT NULL DEFAULT false,
    "commit" TEXT,
    "source_archive" TEXT,
    "meta_files" JSONB NOT NULL DEFAULT '{}',
    "body" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "apps_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "apps_repo_fkey" FOREIGN KEY ("namespace", "name") REFERENCES "repositories"("namespace", "name") ON DELETE RESTRICT ON UPDATE CASCADE
);
CREATE UNIQUE INDEX "apps_seq_key" ON "apps"("seq");
CREATE UNIQUE INDEX "apps_namespace_name_version_key" ON "apps"("namespace", "name", "version");
CREATE INDEX "apps_repository_seq_idx" ON "apps"("repository", "seq");
CREATE INDEX "apps_owner_seq_idx" ON "apps"("owner", "seq");
