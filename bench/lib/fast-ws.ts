import { randomBytes, randomFillSync } from 'node:crypto';
import { WS_SUBPROTOCOL } from '../../protocol/websocket.js';
import { connect, type Socket } from 'node:net';

/** Mask keys cut from one random pool: a getrandom call per frame was 8% of a claimer's CPU. */
const MASK_POOL = Buffer.alloc(8192);
let maskAt = MASK_POOL.length;

function maskKey(): Buffer {
  if (maskAt === MASK_POOL.length) {
    randomFillSync(MASK_POOL);
    maskAt = 0;
  }
  maskAt += 4;
  return MASK_POOL.subarray(maskAt - 4, maskAt);
}

/**
 * A minimal WebSocket client for subscribers: it parses frames straight out of the TCP chunks and
 * hands text frames over as (buffer, start, end), with no per-frame string, event or copy. With
 * the `ws` package the load generator, not the server, was the limit of a 100-subscriber fan-out.
 * Answers pings; reports the close code. Client frames are masked, as the protocol requires.
 */
export class FastWs {
  onText: (buf: Buffer, start: number, end: number) => void = () => {};
  onClose: (code: number) => void = () => {};
  private rest: Buffer | null = null;
  private fragments: Buffer[] | null = null;
  private closed = false;
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.sock.uncork();
  };

  private constructor(private readonly sock: Socket) {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.data(chunk));
    sock.on('close', () => this.finish(1006));
    sock.on('error', () => this.finish(1006));
  }

  static connect(url: string, protocol = WS_SUBPROTOCOL, timeoutMs = 30_000): Promise<FastWs> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const sock = connect({ host: u.hostname, port: Number(u.port) });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`handshake timeout ${url}`));
      }, timeoutMs);
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.once('connect', () => {
        const key = randomBytes(16).toString('base64');
        sock.write(
          `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
        );
      });
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        sock.off('data', onData);
        clearTimeout(timer);
        const status = head.toString('latin1', 0, head.indexOf('\r\n'));
        if (!/ 101 /.test(status)) {
          sock.destroy();
          return reject(new Error(`upgrade refused: ${status}`));
        }
        sock.removeAllListeners('error');
        const ws = new FastWs(sock);
        resolve(ws);
        const extra = head.subarray(end + 4);
        if (extra.length) ws.data(extra);
      };
      sock.on('data', onData);
    });
  }

  sendText(text: string): void {
    this.frame(1, Buffer.from(text));
  }

  close(code = 1000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const payload = Buffer.alloc(2);
      payload.writeUInt16BE(code);
      this.frame(8, payload);
      const t = setTimeout(() => this.sock.destroy(), 1000);
      this.sock.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.sock.end();
    });
  }

  destroy(): void {
    this.sock.destroy();
  }

  private finish(code: number): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(code);
  }

  private frame(opcode: number, payload: Buffer): void {
    if (this.closed || this.sock.destroyed) return;
    const len = payload.length;
    const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const out = Buffer.allocUnsafe(headLen + 4 + len);
    out[0] = 0x80 | opcode;
    if (len < 126) out[1] = 0x80 | len;
    else if (len < 65536) {
      out[1] = 0x80 | 126;
      out.writeUInt16BE(len, 2);
    } else {
      out[1] = 0x80 | 127;
      out.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = maskKey();
    mask.copy(out, headLen);
    for (let i = 0; i < len; i++) out[headLen + 4 + i] = payload[i]! ^ mask[i & 3]!;
    // Frames sent in one tick leave in one write, as a client answering several replies at once
    // would send them: a write per frame was the claimers' largest cost.
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      process.nextTick(this.uncork);
    }
    this.sock.write(out);
  }

  private data(chunk: Buffer): void {
    let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    let off = 0;
    const n = buf.length;
    while (n - off >= 2) {
      const b0 = buf[off]!;
      const b1 = buf[off + 1]!;
      let len = b1 & 0x7f;
      let p = off + 2;
      if (len === 126) {
        if (n - off < 4) break;
        len = buf.readUInt16BE(off + 2);
        p = off + 4;
      } else if (len === 127) {
        if (n - off < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        p = off + 10;
      }
      if (b1 & 0x80) p += 4; // servers do not mask, but tolerate it (payload would need unmasking: not used)
      if (n - p < len) break;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      const end = p + len;
      if (opcode === 1 || opcode === 0) {
        if (fin && !this.fragments) this.onText(buf, p, end);
        else {
          (this.fragments ??= []).push(Buffer.from(buf.subarray(p, end)));
          if (fin) {
            const whole = Buffer.concat(this.fragments);
            this.fragments = null;
            this.onText(whole, 0, whole.length);
          }
        }
      } else if (opcode === 9) {
        this.frame(10, Buffer.from(buf.subarray(p, end)));
      } else if (opcode === 8) {
        const code = len >= 2 ? buf.readUInt16BE(p) : 1005;
        this.finish(code);
        this.sock.destroy();
        return;
      }
      off = end;
    }
    if (off < n) this.rest = Buffer.from(buf.subarray(off));
    buf = undefined as unknown as Buffer;
  }
}

const BODY_KEY = Buffer.from('"body":"');

/** The body stamp of a frame (T/W marker, ms) read from bytes; null when the frame carries none. */
export function stampInBytes(buf: Buffer, start: number, end: number): { measured: boolean; ms: number } | null {
  const i = buf.indexOf(BODY_KEY, start);
  if (i < 0 || i >= end) return null;
  const at = i + BODY_KEY.length;
  const kind = buf[at];
  if (kind !== 84 && kind !== 87) return null;
  const bar = buf.indexOf(124 /* | */, at);
  if (bar < 0 || bar > end) return null;
  return { measured: kind === 84, ms: Number(buf.toString('latin1', at + 1, bar)) };
}

/** A non-negative integer written in ASCII at `at`. */
export function intAt(buf: Buffer, at: number): number {
  let v = 0;
  for (let i = at; i < buf.length; i++) {
    const c = buf[i]!;
    if (c < 48 || c > 57) break;
    v = v * 10 + (c - 48);
  }
  return v;
}
