import t from 'tap';
import { utf8Length } from '../../protocol/well-formed.js';

// The meta bound counts UTF-8 bytes in protocol/ (no Buffer there): it must agree with Node's count.
t.test('utf8Length agrees with Buffer.byteLength for 1-, 2-, 3- and 4-byte characters', async (t) => {
  for (const s of ['', 'abc', 'é', '€', '😀', 'aé€😀z', '{"k":"ñandú 日本語 🦀"}', 'x'.repeat(1000) + '😀'.repeat(100)]) {
    t.equal(utf8Length(s), Buffer.byteLength(s), JSON.stringify(s.slice(0, 24)));
  }
});
