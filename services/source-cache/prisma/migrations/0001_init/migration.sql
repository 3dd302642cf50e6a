-- Cachito requests: one repository at one commit, with the package managers to resolve.
CREATE TABLE "requests" (
    "id" SERIAL NOT NULL,
    "repo" TEXT NOT NULL,
    "ref" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "state_reason" TEXT NOT NULL,
    "pkg_managers" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "flags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "packages_spec" JSONB NOT NULL DEFAULT '{}',
    "dependency_replacements" JSONB NOT NULL DEFAULT '[]',
    "owner_id" TEXT,
    "owner_login" TEXT,
    "submitted_by" TEXT,
    "packages" JSONB NOT NULL DEFAULT '[]',
    "environment_variables" JSONB NOT NULL DEFAULT '{}',
    "configuration_files" JSONB NOT NULL DEFAULT '[]',
    "files" JSONB NOT NULL DEFAULT '[]',
    "bundle_key" TEXT,
    "bundle_sha256" TEXT,
    "bundle_size" BIGINT,
    "logs" TEXT NOT NULL DEFAULT '',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "requests_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "requests_repo_ref_idx" ON "requests" ("repo", "ref");
CREATE INDEX "requests_state_updated_idx" ON "requests" ("state", "updated_at");

-- Every state a request went through, in order.
CREATE TABLE "request_states" (
    "id" SERIAL NOT NULL,
    "request_id" INTEGER NOT NULL,
    "state" TEXT NOT NULL,
    "state_reason" TEXT NOT NULL,
    "updated" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "request_states_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "request_states_request_fkey" FOREIGN KEY ("request_id") REFERENCES "requests"("id") ON DELETE CASCADE
);
CREATE INDEX "request_states_request_idx" ON "request_states" ("request_id");
