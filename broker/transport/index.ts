import type { RelayConfig } from '../config.js';
import { startNodeTransport } from './node-server.js';
import type { RunningTransport, TransportDeps } from './types.js';
import { describePlatform, loadUws, type UwsBuild, type UwsLoad } from './uws-loader.js';
import { startUwsTransport } from './uws-server.js';

export type { RunningTransport, TransportDeps } from './types.js';

export type TransportChoice = { kind: 'uws'; build: UwsBuild; why: string } | { kind: 'node'; why: string };

function refusalText(load: UwsLoad): string {
  return load.refusals.map((r) => `${r.pkg}: ${r.reason}`).join('; ');
}

/**
 * Which transport runs for a setting: `auto` takes a native uWS build when one loads, else the
 * portable one; `uws` without a build that loads is a start-up error naming each candidate's reason.
 */
export function chooseTransport(setting: RelayConfig['transport'], load: () => UwsLoad = loadUws): TransportChoice {
  if (setting === 'node') return { kind: 'node', why: 'AGENT_RELAY_TRANSPORT=node' };
  const uws = load();
  if (uws.build) {
    const skipped = uws.refusals.length > 0 ? `; skipped ${refusalText(uws)}` : '';
    return { kind: 'uws', build: uws.build, why: `${uws.build.name} ${uws.build.version}, ABI ${uws.build.abi}${skipped}` };
  }
  if (setting === 'uws') {
    throw new Error(
      `AGENT_RELAY_TRANSPORT=uws, but no native uWebSockets.js build loads on ${describePlatform()}: ${refusalText(uws)}. Set AGENT_RELAY_TRANSPORT=auto or node to use the portable transport.`,
    );
  }
  return { kind: 'node', why: `no native uWebSockets.js build for ${describePlatform()}: ${refusalText(uws)}` };
}

/** Start the configured transport (the relay's only way in), logging which one and why. */
export function startTransport(deps: TransportDeps): Promise<RunningTransport> {
  const choice = chooseTransport(deps.config.transport);
  deps.log.info({ transport: choice.kind, why: choice.why }, `transport: ${choice.kind} (${choice.why})`);
  return choice.kind === 'uws' ? startUwsTransport(choice.build.module, deps) : startNodeTransport(deps);
}
