import net from 'node:net';
import type { Test } from 'tap';

/**
 * A TCP proxy on 127.0.0.1 in front of a relay. Clients keep its URL while the test drops their
 * connections (a network blip), refuses new ones (a relay that is down), or points it at a relay
 * restarted on a new ephemeral port (a fixed port would sit in TIME_WAIT for a minute). Closed at
 * teardown.
 */
export interface TcpProxy {
  port: number;
  /** http://127.0.0.1:PORT */
  url: string;
  /** Point new connections at another port; 0: refuse them until retargeted. */
  retarget(port: number): void;
  /** Drop every proxied connection. */
  cut(): void;
  /** While paused, new connections are refused (open ones carry on). */
  pause(paused: boolean): void;
  /** Proxied connections open now. */
  readonly connections: number;
}

export async function startTcpProxy(t: Test, targetPort = 0): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let paused = false;
  const server = net.createServer((client) => {
    if (paused || targetPort === 0) return client.destroy();
    client.setNoDelay(true);
    const upstream = net.connect(targetPort, '127.0.0.1');
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
      targetPort = p;
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
