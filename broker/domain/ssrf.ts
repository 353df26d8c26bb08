import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Addresses a callback must never reach unless the operator allows private targets: loopback,
 * private ranges, link-local (cloud metadata at 169.254.169.254), CGNAT, unspecified, multicast,
 * and their IPv6 spellings, including IPv4 embedded in IPv6 (mapped, translated, compatible, 6to4,
 * NAT64 and Teredo, the last two refused as whole ranges).
 */
const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  BLOCKED.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
  ['2001:db8::', 32],
  // Local-use NAT64 (RFC 8215) and Teredo, whose client IPv4 is stored inverted: both can reach
  // internal IPv4 hosts through a translator or relay, and no callback receiver is there.
  ['64:ff9b:1::', 48],
  ['2001::', 32],
  ['100::', 64],
] as const)
  BLOCKED.addSubnet(net, prefix, 'ipv6');

/** The 16 bytes of an IPv6 literal (isIP already said it is one); a zone (`%eth0`) is ignored. */
function ipv6Bytes(address: string): number[] {
  let text = address.split('%')[0]!.toLowerCase();
  const tail: number[] = [];
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    tail.push(...dotted.slice(1).map(Number));
    text = text.slice(0, dotted.index) + '0:0'; // placeholder groups, overwritten below
  }
  const [head, rest] = text.includes('::') ? (text.split('::') as [string, string]) : [text, null];
  const groups = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = rest === null ? [] : groups(rest);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = all.flatMap((g) => [g >> 8, g & 255]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

const v4 = (b: number[], at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
const zero = (b: number[], from: number, to: number) => b.slice(from, to).every((x) => x === 0);

/**
 * The IPv4 address an IPv6 one carries, in the spellings a host may route to it: IPv4-mapped
 * (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96) and 6to4 (2002::/16).
 */
function embeddedIpv4(b: number[]): string | null {
  if (zero(b, 0, 10) && b[10] === 255 && b[11] === 255) return v4(b, 12);
  if (zero(b, 0, 8) && b[8] === 255 && b[9] === 255 && zero(b, 10, 12)) return v4(b, 12);
  if (zero(b, 0, 12)) return v4(b, 12); // ::/96, which holds :: and ::1 too
  if (b[0] === 0x20 && b[1] === 0x02) return v4(b, 2);
  return null;
}

/** True when an IP literal is in a private, loopback, link-local or otherwise internal range. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return BLOCKED.check(address, 'ipv4');
  if (family === 6) {
    const bytes = ipv6Bytes(address);
    const inner = embeddedIpv4(bytes);
    // ::/96 as a whole: IPv4-compatible addresses are deprecated, and :: and ::1 are in it.
    if (inner !== null && zero(bytes, 0, 12)) return true;
    if (inner !== null) return BLOCKED.check(inner, 'ipv4');
    return BLOCKED.check(address.split('%')[0]!, 'ipv6');
  }
  return true;
}

export class BlockedAddressError extends Error {
  readonly code = 'EBLOCKED';
}

/**
 * A DNS lookup for http.request that refuses internal addresses. The check applies to the address
 * actually connected to, so a name that resolves (or rebinds) to 127.0.0.1 is refused too. Node 20
 * connects with autoSelectFamily and asks for every address (`all: true`), any of which it may try:
 * each one is checked, and the answer keeps the shape that was asked for.
 */
export function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const blocked = allowPrivate ? undefined : addresses.find((a) => isPrivateAddress(a.address));
      if (blocked) {
        return callback(new BlockedAddressError(`callback address ${blocked.address} (for ${hostname}) is private, loopback or link-local`), '', 0);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}
