import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const HEADER = `# Agent Relay benchmark results

Written by \`npm run bench\` (quick profile) and \`npm run bench -- --full\` (the issue's sizes): each run
replaces its own section below; notes outside the sections are kept. Raw numbers: \`bench/results/*.json\`.
`;

/** Replace the profile's section of RESULTS.md (between its markers), keeping everything else. */
export function updateResultsMd(path: string, profile: string, markdown: string, svgRel: string): void {
  updateSection(path, profile, `## Latest ${profile} run`, `${markdown}\n![p99 latency vs offered rate](${svgRel})`);
}

/** Replace the section `key` of RESULTS.md (between its markers), or add it at the end. */
export function updateSection(path: string, key: string, heading: string, markdown: string): void {
  const begin = `<!-- bench:${key}:begin -->`;
  const end = `<!-- bench:${key}:end -->`;
  const section = `${begin}\n${heading}\n\n${markdown}\n${end}`;
  let doc = existsSync(path) ? readFileSync(path, 'utf8') : HEADER;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) doc = doc.slice(0, i) + section + doc.slice(j + end.length);
  else doc = `${doc.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, doc);
}
