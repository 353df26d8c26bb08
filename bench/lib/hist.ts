import * as hdr from 'hdr-histogram-js';

/** HDR histograms in microseconds (1 µs .. 1 h, 3 significant digits); workers ship them encoded. */
export type Hist = hdr.Histogram;

export function newHist(): Hist {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

/** Record a latency in milliseconds (clamped to ≥ 1 µs: clocks of two processes may disagree by a hair). */
export function recordMs(h: Hist, ms: number): void {
  const us = Math.round(ms * 1000);
  h.recordValue(us < 1 ? 1 : Math.min(us, 3_600_000_000));
}

export function encodeHist(h: Hist): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function mergeHists(encoded: readonly string[]): Hist {
  const out = newHist();
  for (const e of encoded) if (e) out.add(hdr.decodeFromCompressedBase64(e));
  return out;
}

export interface Latency {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Percentiles in milliseconds. */
export function summarize(h: Hist): Latency {
  if (h.totalCount === 0) return { count: 0, p50: NaN, p99: NaN, p999: NaN, max: NaN, mean: NaN };
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}
