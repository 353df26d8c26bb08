import { join } from 'node:path';
import { WS_PATH } from '../../protocol/websocket.js';
import { relayDriver } from '../lib/relay-driver.js';
import type { Driver } from '../lib/drivers.js';
import { BENCH, freePort, spawnTracked, stopPid, waitHttp } from '../lib/proc.js';

/** The bare server speaks the subset of the relay's protocol the fan-out uses, so the same load generator drives both. */
export const uwsDriver: Driver = relayDriver;

export interface UwsProc {
  pid: number;
  wsUrl: string;
  stop(): Promise<void>;
}

export async function startBareUws(): Promise<UwsProc> {
  const port = await freePort();
  const child = spawnTracked('uws-bare', process.execPath, ['--import', 'tsx', join(BENCH, 'ceilings', 'uws-server.ts'), String(port)]);
  await waitHttp(`http://127.0.0.1:${port}/healthz`, 30_000, child);
  return { pid: child.pid!, wsUrl: `ws://127.0.0.1:${port}${WS_PATH}`, stop: () => stopPid(child.pid!) };
}
