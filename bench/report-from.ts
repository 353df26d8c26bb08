/**
 * Render the report of a recorded run without running the bench:
 * `npx tsx bench/report-from.ts bench/results/latest-quick.json [previous.json] [--md]`.
 */
import { readFileSync } from 'node:fs';
import { buildReport, type BenchResults } from './lib/report.js';

const args = process.argv.slice(2);
const md = args.includes('--md');
const [file, prevFile] = args.filter((a) => a !== '--md');
if (!file) throw new Error('usage: tsx bench/report-from.ts RUN.json [PREVIOUS.json] [--md]');
const load = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as BenchResults;
const report = buildReport(load(file), prevFile ? load(prevFile) : null);
process.stdout.write(`${md ? report.markdown : report.text}\n`);
