/**
 * Ordering check for "no ack, push or callback before the sync that covers it", from a real
 * process's system calls, no mocks. Reads a trace made with
 *
 *   strace -f -qq -y -xx -s 66000 -e trace=pwrite64,fsync,fdatasync,write,writev,sendto,sendmsg \
 *          -o trace.txt <process>
 *
 * and checks, for every socket write that names a batch (ACK <n> or a row body MARK-<n>-...):
 *   1. the WAL transaction holding that batch's rows was written: its commit frame (a 24-byte WAL
 *      frame header whose "database size after commit" field is non-zero) and that frame's page;
 *   2. some fsync/fdatasync of the same -wal path (any fd: the sync is per inode) was *entered*
 *      after that commit frame's page write *returned*, returned 0, and *returned* before the socket
 *      write was *entered*.
 *
 * Why the order of lines is sound across threads (strace -f, the writer thread differs from the
 * socket thread): strace serialises ptrace stops. A thread stopped at a syscall entry does not run
 * that syscall until strace has processed (printed) the entry and resumed it; a syscall's exit is
 * reported only after the kernel finished it. So "exit of X printed before entry of Y" implies X
 * completed before Y started, whatever the threads. Timestamps (-tt) are not needed for that; the
 * line order is used. An "<unfinished ...>" line is an entry, a "<... resumed>" line an exit, and a
 * whole line is both at its position.
 *
 * Usage: npx tsx bench/durability-trace-check.ts trace.txt   (exit 1 on a violation)
 */
import { readFileSync } from 'node:fs';

interface Call {
  tid: string;
  name: string;
  fd: string; // the -y annotation: a path, or socket:[inode] / UNIX:[...]
  args: string;
  ret: string | null;
  entry: number;
  exit: number;
}

const LINE = /^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(.*)$/;

function parse(text: string): Call[] {
  const calls: Call[] = [];
  const open = new Map<string, { name: string; head: string; entry: number }>();
  let pos = 0;
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    const m = LINE.exec(raw)!;
    const tid = m[1] ?? m[2] ?? 'main';
    const body = m[3]!;
    pos++;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(body);
    if (resumed) {
      const o = open.get(tid);
      open.delete(tid);
      if (!o) continue;
      finish(calls, tid, o.name, o.head + resumed[2]!, o.entry, pos);
      continue;
    }
    const call = /^(\w+)\((.*)$/.exec(body);
    if (!call) continue;
    if (body.endsWith('<unfinished ...>')) {
      open.set(tid, { name: call[1]!, head: body.slice(0, -'<unfinished ...>'.length), entry: pos });
      continue;
    }
    finish(calls, tid, call[1]!, body, pos, pos);
  }
  return calls;
}

function finish(calls: Call[], tid: string, name: string, line: string, entry: number, exit: number): void {
  const fdm = /^\w+\(\d+<([^>]*)>/.exec(line);
  const retm = /\)\s+=\s+(-?\d+)/.exec(line.slice(line.lastIndexOf(')')));
  calls.push({ tid, name, fd: fdm ? decode(fdm[1]!).toString('latin1') : '', args: line, ret: retm?.[1] ?? null, entry, exit });
}

/** Decode strace's C-escaped string (-xx: every byte as \xNN, plus the usual escapes). */
function decode(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out.push(c.charCodeAt(0));
      continue;
    }
    const n = s[++i]!;
    if (n === 'x') {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(n)) {
      let j = i;
      while (j < i + 3 && /[0-7]/.test(s[j]!)) j++;
      out.push(parseInt(s.slice(i, j), 8));
      i = j - 1;
    } else out.push({ n: 10, t: 9, r: 13, v: 11, f: 12, '"': 34, '\\': 92 }[n] ?? n.charCodeAt(0));
  }
  return Buffer.from(out);
}

/** The quoted data argument(s) of a write-family call, decoded and concatenated. */
function data(c: Call): Buffer {
  const parts: Buffer[] = [];
  for (const m of c.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)) parts.push(decode(m[1]!));
  return Buffer.concat(parts);
}

function main(): void {
  const file = process.argv[2];
  if (!file) throw new Error('usage: durability-trace-check.ts trace.txt');
  const calls = parse(readFileSync(file, 'utf8'));
  // WAL transactions, in order, per -wal path.
  const commitOf = new Map<number, { wal: string; done: number }>(); // batch -> commit frame page written
  const syncs: Call[] = [];
  const openTxn = new Map<string, { batches: Set<number>; commitHeader: boolean }>();
  let walWrites = 0;
  let commits = 0;
  const socketWrites: Call[] = [];
  for (const c of [...calls].sort((a, b) => a.exit - b.exit)) {
    if (c.fd.endsWith('-wal') && (c.name === 'fsync' || c.name === 'fdatasync')) {
      if (c.ret === '0') syncs.push(c);
      continue;
    }
    if (c.fd.endsWith('-wal') && c.name.startsWith('pwrite')) {
      walWrites++;
      const buf = data(c);
      const t = openTxn.get(c.fd) ?? { batches: new Set<number>(), commitHeader: false };
      openTxn.set(c.fd, t);
      if (buf.length === 24) {
        // A frame header: page number, then the database size after commit (0 = not a commit frame).
        t.commitHeader = buf.readUInt32BE(4) !== 0;
        continue;
      }
      if (buf.length === 32) continue; // the WAL header, written at a restart
      for (const m of buf.toString('latin1').matchAll(/MARK-(\d+)-/g)) t.batches.add(Number(m[1]));
      if (t.commitHeader) {
        commits++;
        for (const b of t.batches) if (!commitOf.has(b)) commitOf.set(b, { wal: c.fd, done: c.exit });
        openTxn.delete(c.fd);
      }
      continue;
    }
    if (/^(socket|UNIX|TCP)/.test(c.fd) && /^(write|writev|sendto|sendmsg)$/.test(c.name)) socketWrites.push(c);
  }
  let checked = 0;
  const violations: string[] = [];
  let worstGap = Infinity;
  for (const w of socketWrites) {
    const text = data(w).toString('latin1');
    const batches = new Set<number>();
    for (const m of text.matchAll(/(?:ACK |MARK-)(\d+)/g)) batches.add(Number(m[1]));
    for (const b of batches) {
      checked++;
      const cm = commitOf.get(b);
      if (!cm) {
        violations.push(`batch ${b}: socket write at line ${w.entry} but no committed WAL frame holds it`);
        continue;
      }
      const cover = syncs.find((s) => s.fd === cm.wal && s.entry > cm.done && s.exit < w.entry);
      if (!cover) violations.push(`batch ${b}: socket write at line ${w.entry} (tid ${w.tid}) with no WAL sync between its commit frame (line ${cm.done}) and it`);
      else worstGap = Math.min(worstGap, w.entry - cover.exit);
    }
  }
  const tids = new Set(syncs.map((s) => s.tid));
  const wtids = new Set(socketWrites.map((s) => s.tid));
  console.log(
    `${calls.length} calls, ${walWrites} WAL writes, ${commits} commits, ${syncs.length} WAL syncs (tids ${[...tids].join(',')}), ` +
      `${socketWrites.length} socket writes (tids ${[...wtids].join(',')}), ${checked} batch mentions checked, ${violations.length} violations`,
  );
  for (const v of violations.slice(0, 10)) console.log('  ' + v);
  if (checked === 0) {
    console.log('nothing was checked: is the trace complete (-s large enough, -y, -xx)?');
    process.exit(2);
  }
  process.exit(violations.length > 0 ? 1 : 0);
}

main();
