import { PostgresStore } from '../broker/store-postgres/store.js';
import { launchPostgres } from '../test/helpers/postgres.js';
import { sendOp } from '../test/helpers/records.js';

const server = await launchPostgres();
try {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url });
  for (const per of [1, 10, 100, 250]) {
    const batches = Math.max(20, Math.round(3000 / per));
    const t0 = performance.now();
    for (let b = 0; b < batches; b++) await store.apply(Array.from({ length: per }, (_, i) => sendOp({ body: `b${b} m${i} ${'x'.repeat(180)}` }, ['sink'])));
    const ms = performance.now() - t0;
    console.log(`per batch ${per}: ${(ms / batches).toFixed(2)} ms/batch, ${Math.round((batches * per) / (ms / 1000))} msgs/s`);
  }
  await store.close();
} finally {
  await server.shutdown();
}
