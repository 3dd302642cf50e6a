-- Request state events stored in the transaction that stores the change they announce, published after
-- the commit and then deleted (kit EventOutbox): a killed worker or a NATS outage loses none.
CREATE TABLE "event_outbox" (
    "seq" BIGSERIAL NOT NULL,
    "id" TEXT NOT NULL,
    "subject" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "event_outbox_pkey" PRIMARY KEY ("seq")
);
