-- Image builds of every kind (ECR app, Kabuto image, REE environment).
CREATE TABLE "builds" (
    "id" SERIAL NOT NULL,
    "kind" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "owner_id" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "builds_pkey" PRIMARY KEY ("id")
);
