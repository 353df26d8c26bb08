// The layers the tree shows (issue 16), checked by `npm run lint:layers` (scripts/lint-layers.mjs)
// over the product code: protocol/, broker/, adapters/, clients/, bin/. test/, bench/ and scripts/
// are not checked against the layers (they may reach anything they test or measure).
//
//   protocol/                  the wire contract: pure, imports only protocol/ and npm packages (zod)
//   broker/domain/             protocol + broker/domain (+ node: built-ins: callbacks, ssrf), and
//                              the types of its settings (config, logger, integrations)
//   broker/ support files      config, logger, metrics, integrations, package-root, startup-error,
//                              serve-args, migrate-args, npm-parent, config-doc: protocol + domain + each other
//   broker/store/              protocol + domain + support + its own folder (never transport)
//   broker/store-postgres/     the same for the PostgreSQL store: never transport, never broker/store
//   broker/transport/          protocol + domain + support + its own folder (never store)
//   adapters/NAME/             protocol, broker/domain/ports.ts, clients/ (the relay client library,
//                              for adapters that are relay clients: codex, claude), its own folder;
//                              never another adapter, broker/store, broker/transport, the domain's
//                              insides or the broker's support files. adapters/http runs inside
//                              the broker and is no relay client: no clients/ either.
//   clients/                   protocol + clients; never broker/, never adapters/. The dashboard
//                              (clients/dashboard) is a browser bundle: no node: built-ins.
//   composition                broker/main.ts and broker/relay.ts may import anything under
//                              protocol/, broker/ and adapters/. main.ts is the process entry
//                              (flags, config, signals); relay.ts is the wiring itself
//                              (createRelay: store, core, transport, the HTTP adapter), which main.ts
//                              and the tests (test/helpers/relay.ts) start in-process: one
//                              composition root in two files. Nothing else in product code imports them.
//   bin/entries/               the commands' entry points: compose the CLI with the adapters'
//                              command groups, and hand `agent-relay serve` to broker/main.ts
//                              (loaded lazily: a process boundary the CLI itself never crosses).
//
// No import cycles anywhere in the product code. Type-only imports count (tsPreCompilationDeps).
// Violations that existed when the check came in are in .dependency-cruiser-known-violations.json;
// the check fails on any other, and on a listed one that no longer occurs (the list only shrinks:
// `npm run lint:layers -- --shrink` drops those).

const SUPPORT = '^broker/(config|config-doc|logger|metrics|integrations|package-root|startup-error|serve-args|migrate-args|npm-parent)\\.ts$';
/** What the domain is built with (their types only: see domain-takes-settings-as-types). */
const SETTINGS = '^broker/(config|logger|integrations)\\.ts$';
const COMPOSITION = '^broker/(main|relay)\\.ts$';
const NPM = 'node_modules';

/** A rule that `from` may import only what `allowed` matches (npm packages always; node: built-ins when `core`). */
function onlyTo(name, comment, from, allowed, core = true) {
  return {
    name,
    comment,
    severity: 'error',
    from: typeof from === 'string' ? { path: from } : from,
    to: { pathNot: [...allowed, NPM], ...(core ? { dependencyTypesNot: ['core'] } : {}) },
  };
}

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No import cycles in the product code.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'Every import resolves (a typo or a moved file shows here before the build).',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    onlyTo('protocol-is-pure', 'protocol/ imports only protocol/ and npm packages: no node: built-ins, nothing of the broker, adapters or clients.', '^protocol/', ['^protocol/'], false),
    onlyTo('domain-imports-protocol-and-domain', 'broker/domain/ imports only protocol/ and broker/domain/ (no store, transport, adapters, support files), and the types of the settings it is built with.', '^broker/domain/', ['^protocol/', '^broker/domain/', SETTINGS]),
    {
      name: 'domain-takes-settings-as-types',
      comment: 'The domain is handed its config, logger and integrations by the composition root: it imports their types only, never the modules that load them.',
      severity: 'error',
      from: { path: '^broker/domain/' },
      to: { path: SETTINGS, dependencyTypesNot: ['type-only'] },
    },
    onlyTo('support-below-store-and-transport', 'The broker\'s support files (config, logger, metrics...) import only protocol/, broker/domain/ and each other.', SUPPORT, ['^protocol/', '^broker/domain/', SUPPORT]),
    onlyTo('store-imports-protocol-domain-support', 'broker/store/ imports only protocol/, broker/domain/, the support files and broker/store/ (never transport).', '^broker/store/', ['^protocol/', '^broker/domain/', SUPPORT, '^broker/store/']),
    onlyTo('store-postgres-imports-protocol-domain-support', 'broker/store-postgres/ imports only protocol/, broker/domain/, the support files and broker/store-postgres/ (never transport, never the SQLite store).', '^broker/store-postgres/', ['^protocol/', '^broker/domain/', SUPPORT, '^broker/store-postgres/']),
    onlyTo('transport-imports-protocol-domain-support', 'broker/transport/ imports only protocol/, broker/domain/, the support files and broker/transport/ (never store).', '^broker/transport/', ['^protocol/', '^broker/domain/', SUPPORT, '^broker/transport/']),
    onlyTo('composition-imports-broker-and-adapters', 'broker/main.ts and broker/relay.ts compose protocol/, broker/ and adapters/ (not clients/, not bin/).', COMPOSITION, ['^protocol/', '^broker/', '^adapters/']),
    {
      name: 'adapter-imports-protocol-ports-clients-own',
      comment: 'An adapter imports protocol/, broker/domain/ports.ts, clients/ and its own folder: never another adapter, never broker/store, broker/transport, the domain\'s insides or the broker\'s support files.',
      severity: 'error',
      from: { path: '^adapters/([^/]+)/' },
      to: { pathNot: ['^protocol/', '^broker/domain/ports\\.ts$', '^clients/', '^adapters/$1/', NPM], dependencyTypesNot: ['core'] },
    },
    {
      name: 'http-adapter-is-no-relay-client',
      comment: 'adapters/http runs inside the broker: it talks to the domain through its ports, not through the relay client library.',
      severity: 'error',
      from: { path: '^adapters/http/' },
      to: { path: '^clients/' },
    },
    onlyTo('clients-import-protocol-and-clients', 'clients/ imports only protocol/ and clients/: never broker/, never adapters/.', '^clients/', ['^protocol/', '^clients/']),
    {
      name: 'dashboard-runs-in-the-browser',
      comment: 'clients/dashboard is bundled for the browser: no node: built-ins.',
      severity: 'error',
      from: { path: '^clients/dashboard/' },
      to: { dependencyTypes: ['core'] },
    },
    onlyTo('entries-compose-clients-adapters-broker-main', 'bin/entries/ import clients/, adapters/ and broker/main.ts (the relay, for `serve`).', '^bin/entries/', ['^protocol/', '^clients/', '^adapters/', '^broker/main\\.ts$']),
  ],
  options: {
    doNotFollow: { path: NPM },
    exclude: { path: ['^dist/', '^node_modules/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
