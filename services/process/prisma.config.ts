import { defineConfig } from 'prisma/config';

// Only `prisma generate` runs here: migrations are SQL files applied by @dockyard/kit at start-up.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
});
