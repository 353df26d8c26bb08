/** A table rendered two ways: aligned text for the terminal, Markdown for RESULTS.md. */
export interface Table {
  title: string;
  headers: string[];
  rows: Array<Array<string | number>>;
  note?: string;
}

function cell(v: string | number): string {
  return typeof v === 'number' ? fmtNum(v) : v;
}

export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function textTable(t: Table): string {
  const rows = t.rows.map((r) => r.map(cell));
  const widths = t.headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [t.title, line(t.headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  if (t.note) out.push(t.note);
  return out.join('\n');
}

export function mdTable(t: Table): string {
  const rows = t.rows.map((r) => r.map(cell));
  const out = [`#### ${t.title}`, '', `| ${t.headers.join(' | ')} |`, `|${t.headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
  if (t.note) out.push('', t.note);
  return out.join('\n');
}
