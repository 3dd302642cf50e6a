import type { BlobStore, OpenApiDocument } from '@dockyard/kit';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { ExecutionConfig } from '../config.js';
import type { ExecutionEvents } from '../domain/events.js';
import type { ImageResolver } from '../domain/images.js';

export interface RouteDeps {
  doc: OpenApiDocument;
  prisma: PrismaClient;
  events: ExecutionEvents;
  images: ImageResolver;
  blobs: BlobStore;
  config: ExecutionConfig;
  /** Queues one submission of a pipeline on the work queue. */
  enqueue: (pipelineId: number, run: number, actor: string) => Promise<void>;
}
