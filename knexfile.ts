import { knexConfig } from './src/db/knex';

/** For the knex CLI (`npx knex migrate:latest --knexfile knexfile.ts`); the server migrates on start. */
export default knexConfig({ databaseUrl: process.env.DATABASE_URL, dataDir: process.env.KMS_DATA_DIR ?? './data' });
