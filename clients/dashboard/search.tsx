import { useState } from 'preact/hooks';
import type { Message } from '../../protocol/common.js';
import type { SearchHit } from '../../protocol/methods/message.js';
import { clock, useAction } from './hooks.js';
import type { DashboardStore } from './store.js';

/** A snippet's matched words (between « and » on the wire) as <mark>: text nodes only, never HTML. */
function Snippet({ text }: { text: string }) {
  return <span class="body">{text.split(/«([^»]*)»/).map((part, i) => (i % 2 ? <mark key={i}>{part}</mark> : part))}</span>;
}

/** message/search from the dashboard (an observer: every message), best first; a hit opens its thread. */
export function SearchBox({ store, channel, onOpen }: { store: DashboardStore; channel: string; onOpen: (m: Message) => void }) {
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [next, setNext] = useState<string | undefined>();
  const [error, run] = useAction();
  const search = (after?: string) =>
    run('search', async () => {
      const r = await store.call('message/search', { query, ...(channel ? { channel } : {}), ...(after ? { after } : {}) });
      setHits((shown) => (after && shown ? [...shown, ...r.hits] : r.hits));
      setNext(r.nextCursor);
    });
  const clear = () => (setQuery(''), setHits(null), setNext(undefined));
  return (
    <search class="search">
      <form onSubmit={(e) => (e.preventDefault(), query.trim() && void search())}>
        <input type="search" aria-label="Search messages" placeholder="search subjects and bodies…" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        {hits && (
          <button type="button" onClick={clear} aria-label="Clear search">
            ✕
          </button>
        )}
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {hits && (
        <ol class="hits" aria-label="Search results">
          {hits.length === 0 && <li class="dim">no messages found</li>}
          {hits.map((h) => (
            <li key={h.message.id} data-message-id={h.message.id}>
              <button type="button" class="row" onClick={() => onOpen(h.message)} aria-label={`Search hit: message ${h.message.id} from ${h.message.from}: open its thread`}>
                <span class="meta">
                  <span class="mid">#{h.message.id}</span> <strong>{h.message.from}</strong> → {h.message.to}
                  {h.message.channel && <span class="chip">{h.message.channel}</span>}
                  <span class="time">{clock(h.message.createdAt)}</span>
                </span>
                <Snippet text={h.snippet} />
              </button>
            </li>
          ))}
          {next && (
            <li>
              <button type="button" onClick={() => void search(next)}>
                more
              </button>
            </li>
          )}
        </ol>
      )}
    </search>
  );
}
