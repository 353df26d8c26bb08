import type { Agent, AgentSummary, Lease, Message, RelayEvent, Task } from '../../protocol/common.js';
import type { SearchHit } from '../../protocol/methods/message.js';

type Colors = ReturnType<typeof import('picocolors').createColors>;

/** Columns padded to their widest cell; the last column is never padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** One line, at most `max` characters, newlines flattened. */
export function clip(text: string, max = 120): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function time(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

/** `#12 alice → bob [general] subject: body` */
export function messageLine(m: Message, c: Colors, max = 120): string {
  const channel = m.channel ? c.dim(` [${m.channel}]`) : '';
  const reply = m.replyTo ? c.dim(` ↳#${m.replyTo}`) : '';
  const claim = m.claimable ? c.yellow(` claimable task #${m.taskId}`) : '';
  const subject = m.subject ? `${c.bold(m.subject)}: ` : '';
  return `${c.cyan(`#${m.id}`)} ${m.from} → ${m.to}${channel}${reply}${claim} ${subject}${clip(m.body, max)}`;
}

/**
 * A search hit: who, where and when, then its snippet indented, the matched words (between « and »
 * on the wire) highlighted; without colors the markers stay, so the match still shows.
 */
export function hitLines(h: SearchHit, c: Colors): string {
  const m = h.message;
  const channel = m.channel ? c.dim(` [${m.channel}]`) : '';
  const subject = m.subject ? ` ${c.bold(clip(m.subject, 80))}` : '';
  const snippet = c.isColorSupported ? clip(h.snippet, 400).replace(/«([^»]*)»/g, (_all, word: string) => c.yellow(c.bold(word))) : clip(h.snippet, 400);
  return `${c.cyan(`#${m.id}`)} ${m.from} → ${m.to}${channel} ${c.dim(time(m.createdAt))}${subject}\n    ${snippet}`;
}

export function agentsTable(agents: Agent[]): string {
  return table(
    ['ID', 'STATUS', 'READY', 'LABEL', 'CLIENT', 'TAGS', 'CAPS', 'LAST SEEN'],
    agents.map((a) => [a.id, a.status, a.ready ? 'yes' : 'no', a.label, a.client ?? '', a.tags.join(','), a.capabilities.join(','), time(a.lastSeenAt)]),
  );
}

export function tasksTable(tasks: Task[]): string {
  return table(
    ['ID', 'STATUS', 'PROGRESS', 'OWNER', 'TARGET', 'SOURCE', 'SEEN', 'TITLE'],
    tasks.map((t) => [String(t.id), t.status, `${t.progress}%`, t.claimedBy ?? '', t.target, t.source, `×${t.occurrences}`, clip(t.title, 60)]),
  );
}

export function leasesTable(leases: Lease[], now: number): string {
  return table(
    ['ID', 'HOLDER', 'MODE', 'EXPIRES IN', 'TOKEN', 'RESOURCES', 'REASON'],
    leases.map((l) => [String(l.id), l.agentId, l.mode, `${Math.max(0, Math.round((l.expiresAt - now) / 1000))}s`, String(l.token), l.resources.join(' '), clip(l.reason ?? '', 60)]),
  );
}

export function taskLine(t: Task, c: Colors): string {
  const owner = t.claimedBy ? ` by ${t.claimedBy}` : '';
  return `${c.magenta(`task #${t.id}`)} ${t.status}${owner} ${t.progress}% ${clip(t.title, 80)}`;
}

export function eventLine(e: RelayEvent): string {
  const data = Object.keys(e.data).length ? ` ${JSON.stringify(e.data)}` : '';
  return `${time(e.at)}  ${e.kind}${e.agentId ? ` ${e.agentId}` : ''}${data}`;
}

export function agentLine(a: AgentSummary, c: Colors): string {
  const status = a.status === 'offline' ? c.dim(a.status) : c.green(a.status);
  return `${c.blue(`agent ${a.id}`)} ${status}${a.ready ? '' : ' (not ready)'} ${a.label !== a.id ? a.label : ''}`.trimEnd();
}
