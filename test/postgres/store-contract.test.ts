import t, { type Test } from 'tap';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { startPostgres } from '../helpers/postgres.js';
import { storeContract } from '../unit/store-contract.js';

/** The store contract (test/unit/store-contract.ts) on PostgreSQL: a fresh database per case. */
const server = await startPostgres(t);
const open = async (t: Test) => {
  const store = await PostgresStore.open({ url: await server.freshDatabase() });
  t.teardown(() => store.close());
  return store;
};

storeContract(t, open);
