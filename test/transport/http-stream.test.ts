import t from 'tap';
import type { HttpResponse } from 'uWebSockets.js';
import { UwsExchange } from '../../broker/transport/uws-exchange.js';

/**
 * The streamed response (SSE) over a stand-in for uWS's HttpResponse that records every write:
 * what one turn writes leaves in one corked write, in order; the send-buffer bound still ends a
 * stream that does not drain; end() sends what is queued first.
 */

function fakeResponse() {
  const calls: string[] = [];
  let accept = true;
  let writable: (() => boolean) | undefined;
  const res = {
    onAborted: () => res,
    onWritable: (fn: () => boolean) => {
      writable = fn;
      return res;
    },
    cork: (fn: () => void) => {
      calls.push('cork');
      fn();
      return res;
    },
    writeStatus: () => res,
    writeHeader: () => res,
    write: (chunk: string) => {
      calls.push(`write ${chunk}`);
      return accept;
    },
    end: () => {
      calls.push('end');
      return res;
    },
  };
  return {
    res: res as unknown as HttpResponse,
    calls,
    writes: () => calls.filter((c) => c.startsWith('write ')).map((c) => c.slice(6)),
    setAccept: (v: boolean) => (accept = v),
    drain: () => writable?.(),
  };
}

function open(maxBackpressureBytes: number) {
  const fake = fakeResponse();
  const ex = new UwsExchange(fake.res, { method: 'GET', path: '/api/stream', query: new URLSearchParams(), headers: {}, maxBackpressureBytes });
  const stream = ex.stream(200, { 'content-type': 'text/event-stream' });
  fake.calls.length = 0;
  return { ...fake, stream };
}

const tick = () => new Promise<void>((resolve) => queueMicrotask(resolve));

t.test('chunks written in one turn leave together, in order, in one corked write', async (t) => {
  const { stream, calls, writes } = open(1 << 20);
  t.equal(stream.write('a\n\n'), 'ok');
  t.equal(stream.write('b\n\n'), 'ok');
  t.equal(stream.write('c\n\n'), 'ok');
  t.same(calls, [], 'nothing is written synchronously');
  await tick();
  t.same(calls, ['cork', 'write a\n\nb\n\nc\n\n']);
  stream.write('d\n\n');
  await tick();
  t.same(writes(), ['a\n\nb\n\nc\n\n', 'd\n\n'], 'the next turn is its own write');
});

t.test('end() sends what is queued, then ends; later writes are refused', async (t) => {
  const { stream, calls } = open(1 << 20);
  stream.write('a\n\n');
  stream.end();
  t.same(calls, ['cork', 'write a\n\n', 'cork', 'end']);
  t.equal(stream.write('b\n\n'), 'dropped');
  await tick();
  t.same(calls, ['cork', 'write a\n\n', 'cork', 'end'], 'nothing after the end');
});

t.test('a chunk past the send-buffer bound is refused and the stream ends after what was admitted', async (t) => {
  const { stream, writes, calls, setAccept } = open(1000);
  setAccept(false); // the client stopped reading: uWS keeps what it cannot send
  t.equal(stream.write('x'.repeat(600)), 'ok');
  await tick();
  t.equal(stream.write('y'.repeat(300)), 'backpressure', 'uWS holds unsent bytes');
  t.equal(stream.write('z'.repeat(200)), 'dropped', '600 unsent + 300 queued + 200 > 1000');
  t.ok(stream.closed);
  t.same(writes(), ['x'.repeat(600), 'y'.repeat(300)], 'the admitted chunk was still sent, the refused one not');
  t.equal(calls.at(-1), 'end');
});

t.test('once the socket drains, the bound counts from zero again', async (t) => {
  const { stream, setAccept, drain } = open(1000);
  setAccept(false);
  stream.write('x'.repeat(900));
  await tick();
  setAccept(true);
  drain();
  t.equal(stream.write('y'.repeat(900)), 'ok');
  t.notOk(stream.closed);
});

t.test('a backlog written in one step reaches the socket as it goes: only unsent bytes count', async (t) => {
  const { stream, writes } = open(100 * 1024);
  const chunk = `data: ${'m'.repeat(1018)}\n\n`; // 1 KiB
  const results = new Set(Array.from({ length: 300 }, () => stream.write(chunk)));
  t.same([...results], ['ok']);
  t.notOk(stream.closed, '300 KiB through a 100 KiB bound while the socket takes it');
  await tick();
  t.equal(writes().join(''), chunk.repeat(300), 'all of it, in order');
  t.ok(writes().length < 10, `in a few writes (${writes().length})`);
});
