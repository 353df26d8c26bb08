import net from 'node:net';
import type { Test } from 'tap';

/**
 * A TCP proxy on 127.0.0.1 in front of a relay, or of several relay nodes (round-robin, the way a
 * load balancer spreads connections). Clients keep its URL while the test drops their connections
 * (a network blip), refuses new ones (a relay that is down), or points it at a relay restarted on a
 * new ephemeral port (a fixed port would sit in TIME_WAIT for a minute). A target that refuses the
 * connection is skipped for the next one, as a load balancer's health check would. Closed at
 * teardown.
 */
export interface TcpProxy {
  port: number;
  /** http://127.0.0.1:PORT */
  url: string;
  /** Point new connections at another port; 0: refuse them until retargeted. */
  retarget(port: number): void;
  /** With several targets: replace target `index` (0: skip it until replaced). */
  retargetAt(index: number, port: number): void;
  /** Drop every proxied connection. */
  cut(): void;
  /** While paused, new connections are refused (open ones carry on). */
  pause(paused: boolean): void;
  /** Proxied connections open now. */
  readonly connections: number;
}

export async function startTcpProxy(t: Test, target: number | number[] = 0): Promise<TcpProxy> {
  let targets = Array.isArray(target) ? [...target] : [target];
  let next = 0;
  const sockets = new Set<net.Socket>();
  let paused = false;

  /** Connect `client` to the first target in round-robin order that accepts, or drop it. */
  const forward = (client: net.Socket, candidates: number[]) => {
    const port = candidates.shift();
    if (port === undefined) return client.destroy();
    const upstream = net.connect(port, '127.0.0.1');
    let connected = false;
    upstream.once('error', () => {
      if (!connected && !client.destroyed) forward(client, candidates);
    });
    upstream.once('connect', () => {
      connected = true;
      if (client.destroyed) return upstream.destroy();
      upstream.setNoDelay(true);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
  };

  const server = net.createServer((client) => {
    const live = targets.map((_, i) => targets[(next + i) % targets.length]!).filter((p) => p !== 0);
    next = (next + 1) % targets.length;
    if (paused || live.length === 0) return client.destroy();
    client.setNoDelay(true);
    // Until connected upstream, the client's bytes wait in its (not yet flowing) socket.
    client.on('error', () => client.destroy());
    forward(client, live);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    retarget: (p) => {
      targets = [p];
      next = 0;
    },
    retargetAt: (i, p) => {
      targets[i] = p;
    },
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    pause: (p) => {
      paused = p;
    },
    get connections() {
      return sockets.size / 2;
    },
  };
}
