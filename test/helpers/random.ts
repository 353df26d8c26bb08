/**
 * A seeded generator for repeatable random tests (mulberry32): `rand(n)` is a whole number in
 * [0, n). Its low bits are as random as its high ones, unlike a plain LCG's taken modulo n.
 */
export function seeded(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * n);
  };
}
