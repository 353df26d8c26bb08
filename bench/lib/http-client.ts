import { Agent, request } from 'node:http';

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One HTTP request on a keep-alive agent; resolves with status and body text. */
export function httpCall(agent: Agent, method: string, url: string, headers: Record<string, string> = {}, body?: string, signal?: AbortSignal): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, agent, headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } : headers, ...(signal ? { signal } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export function keepAliveAgent(maxSockets = Infinity): Agent {
  return new Agent({ keepAlive: true, maxSockets, maxFreeSockets: 1024 });
}

/** Register an agent over HTTP (POST /api/agents); returns its token. */
export async function registerHttp(base: string, agent: Agent, params: Record<string, unknown>): Promise<{ id: string; token: string; cursor: number }> {
  const r = await httpCall(agent, 'POST', `${base}/api/agents`, {}, JSON.stringify(params));
  if (r.status !== 201 && r.status !== 200) throw new Error(`register ${String(params.id)}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
  const j = JSON.parse(r.body) as { agent: { id: string }; agentToken: string; cursor: number };
  return { id: j.agent.id, token: j.agentToken, cursor: j.cursor };
}
