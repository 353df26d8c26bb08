import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { HttpExchange } from '../../broker/domain/ports.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Everything comes from the relay itself: no CDN, no inline script.
  'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
};

interface Asset {
  type: string;
  body: Buffer;
}

/**
 * Serves the built dashboard (`dir` is dist/dashboard, made by `npm run build`): index.html never cached
 * (it names the current bundles), hashed assets cached for a year.
 */
export class DashboardFiles {
  private index: Buffer | null = null;
  private readonly assets = new Map<string, Asset>();

  constructor(dir: string) {
    try {
      this.index = readFileSync(join(dir, 'index.html'));
      for (const name of readdirSync(join(dir, 'assets'))) {
        this.assets.set(name, { type: TYPES[extname(name)] ?? 'application/octet-stream', body: readFileSync(join(dir, 'assets', name)) });
      }
    } catch {
      this.index = null;
    }
  }

  /** True when it answered the request. */
  serve(ex: HttpExchange): boolean {
    if (ex.method !== 'GET' && ex.method !== 'HEAD') return false;
    if (ex.path === '/' || ex.path === '/index.html') {
      if (!this.index) {
        ex.reply(503, { 'content-type': 'text/plain; charset=utf-8' }, 'dashboard not built: run npm run build\n');
        return true;
      }
      ex.reply(200, { ...SECURITY_HEADERS, 'content-type': TYPES['.html']!, 'cache-control': 'no-cache' }, ex.method === 'HEAD' ? '' : this.index);
      return true;
    }
    const m = /^\/assets\/([A-Za-z0-9._-]+)$/.exec(ex.path);
    if (!m) return false;
    const asset = this.assets.get(m[1]!);
    if (!asset) return false;
    ex.reply(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'cache-control': 'public, max-age=31536000, immutable' }, ex.method === 'HEAD' ? '' : asset.body);
    return true;
  }
}
