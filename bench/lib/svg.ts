import type { FanoutResult } from '../scenarios/fanout.js';
import { SYSTEM_LABELS, SYSTEMS } from './drivers.js';

const COLORS: Record<string, string> = {
  relay: '#d62728',
  uws: '#1f77b4',
  nats: '#2ca02c',
  jetstream: '#98df8a',
  'redis-pubsub': '#9467bd',
  'redis-streams': '#c5b0d5',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/**
 * p99 publish-to-delivery latency against offered rate, log-log, one panel per subscriber count,
 * a line per system (relay, the bare-uWS ceiling, the peers). Hollow points were not held.
 */
export function renderFanoutSvg(f: FanoutResult, meta: { date: string; profile: string }): string {
  const ns = [...new Set(f.steps.map((s) => s.n))].sort((a, b) => a - b);
  const systems = SYSTEMS.filter((s) => f.steps.some((st) => st.system === s));
  const pw = 330;
  const ph = 250;
  const m = { l: 52, r: 12, t: 34, b: 40 };
  const width = ns.length * (pw + m.l + m.r) + 10;
  const legendH = 22 * Math.ceil(systems.length / 3) + 10;
  const height = ph + m.t + m.b + 40 + legendH;
  const rates = f.steps.filter((s) => !s.skipped).map((s) => s.rate);
  const xmin = Math.min(...rates) / 1.3;
  const xmax = Math.max(...rates) * 1.3;
  const ymin = 0.1;
  const ymax = 10_000;
  const lx = (v: number) => (Math.log10(v) - Math.log10(xmin)) / (Math.log10(xmax) - Math.log10(xmin));
  const ly = (v: number) => 1 - (Math.log10(Math.min(ymax, Math.max(ymin, v))) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="10" y="18" font-size="14" font-weight="bold">p99 publish-to-delivery latency vs offered rate (${esc(meta.profile)} profile, ${esc(meta.date.slice(0, 16))})</text>`);
  ns.forEach((n, i) => {
    const ox = 10 + i * (pw + m.l + m.r) + m.l;
    const oy = 30 + m.t;
    const X = (v: number) => ox + lx(v) * pw;
    const Y = (v: number) => oy + ly(v) * ph;
    out.push(`<text x="${ox + pw / 2}" y="${oy - 10}" text-anchor="middle" font-weight="bold">N = ${n} subscribers</text>`);
    out.push(`<rect x="${ox}" y="${oy}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
    for (let d = ymin; d <= ymax; d *= 10) {
      out.push(`<line x1="${ox}" x2="${ox + pw}" y1="${Y(d)}" y2="${Y(d)}" stroke="#eee"/>`);
      out.push(`<text x="${ox - 4}" y="${Y(d) + 4}" text-anchor="end">${d >= 1 ? d : d.toFixed(1)}</text>`);
    }
    for (const t of [300, 1000, 3000, 10_000, 30_000, 100_000, 300_000]) {
      if (t < xmin || t > xmax) continue;
      out.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${oy}" y2="${oy + ph}" stroke="#eee"/>`);
      out.push(`<text x="${X(t)}" y="${oy + ph + 14}" text-anchor="middle">${t >= 1000 ? `${t / 1000}k` : t}</text>`);
    }
    out.push(`<line x1="${ox}" x2="${ox + pw}" y1="${Y(50)}" y2="${Y(50)}" stroke="#444" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${ox + pw - 2}" y="${Y(50) - 3}" text-anchor="end" fill="#444">50 ms</text>`);
    out.push(`<text x="${ox + pw / 2}" y="${oy + ph + 30}" text-anchor="middle">offered msgs/s</text>`);
    if (i === 0) out.push(`<text transform="translate(${ox - 38},${oy + ph / 2}) rotate(-90)" text-anchor="middle">p99 latency, ms</text>`);
    for (const s of systems) {
      const pts = f.steps.filter((st) => st.system === s && st.n === n && !st.skipped && Number.isFinite(st.latency.p99)).sort((a, b) => a.rate - b.rate);
      if (!pts.length) continue;
      const c = COLORS[s]!;
      out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${X(p.rate).toFixed(1)},${Y(p.latency.p99).toFixed(1)}`).join(' ')}"/>`);
      for (const p of pts)
        out.push(
          `<circle cx="${X(p.rate).toFixed(1)}" cy="${Y(p.latency.p99).toFixed(1)}" r="3.5" fill="${p.held ? c : 'white'}" stroke="${c}" stroke-width="1.5"><title>${esc(SYSTEM_LABELS[s])} N=${n} ${p.rate}/s: p99 ${p.latency.p99} ms, ${p.deliveredPerSec} deliveries/s</title></circle>`,
        );
    }
  });
  const ly0 = 30 + m.t + ph + m.b + 10;
  systems.forEach((s, i) => {
    const lxp = 20 + (i % 3) * 260;
    const lyp = ly0 + Math.floor(i / 3) * 22;
    out.push(`<line x1="${lxp}" x2="${lxp + 24}" y1="${lyp}" y2="${lyp}" stroke="${COLORS[s]}" stroke-width="3"/>`);
    out.push(`<text x="${lxp + 30}" y="${lyp + 4}">${esc(SYSTEM_LABELS[s])}</text>`);
  });
  out.push(`<text x="${width - 10}" y="${height - 6}" text-anchor="end" fill="#666">filled: held (all delivered, p99 &lt; 50 ms); hollow: not held</text>`);
  out.push('</svg>');
  return out.join('\n');
}
