import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './child.js';

export const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The README's default relay address, which a test swaps for its own relay's. */
export const README_RELAY_URL = 'http://127.0.0.1:4850';

/**
 * The body of the fenced block right after a `<!-- tested: NAME ... -->` line of README.md: the
 * tests that name a block run it as written, so the text and the relay cannot drift apart.
 */
export function testedBlock(name: string, readme = README): string {
  const marker = new RegExp(`<!-- tested: ${name}\\b[^>]*-->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\\n\`\`\`\\n`);
  const m = marker.exec(readme);
  if (!m) throw new Error(`README.md has no fenced block after <!-- tested: ${name} -->`);
  return m[1]!;
}
