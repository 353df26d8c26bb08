// Shared by the bin/ launchers: run a built entry of dist/ with plain node. The compile cache
// (Node 22.1+) keeps V8's compiled code between runs: about 5 ms of `--help`'s 45 ms on Node 24.
import module from 'node:module';

export async function runBuilt(entry) {
  module.enableCompileCache?.();
  try {
    await import(new URL(`../dist/bin/${entry}.js`, import.meta.url).href);
  } catch (err) {
    // Only the built entry itself missing means "not built"; a missing dependency is a real error.
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).replaceAll('\\', '/').includes(`dist/bin/${entry}.js`)) {
      process.stderr.write(`${entry}: not built: run \`npm run build\` in ${new URL('..', import.meta.url).pathname} (npm ci does it too)\n`);
      process.exit(1);
    }
    throw err;
  }
}
