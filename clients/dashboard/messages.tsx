import { useEffect, useRef, useState } from 'preact/hooks';
import type { Message } from '../../protocol/common.js';
import { externalSender } from '../../protocol/senders.js';
import { getWholeThread } from '../pages.js';
import { clock, useAction } from './hooks.js';
import { SearchBox } from './search.js';
import type { DashboardStore } from './store.js';

const ROW_HEIGHT = 56;
const OVERSCAN = 10;
export const SENDER = externalSender('dashboard');

/** Only the rows in view (plus a margin) are in the DOM: thousands of messages stay fast. */
function MessageList({ messages, onOpen }: { messages: Message[]; onOpen: (m: Message) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const [scroll, setScroll] = useState({ top: 0, height: 400 });
  const [stick, setStick] = useState(true);
  useEffect(() => {
    const el = box.current;
    if (el && stick) el.scrollTop = el.scrollHeight;
  }, [messages.length, stick]);
  const first = Math.max(0, Math.floor(scroll.top / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(messages.length, Math.ceil((scroll.top + scroll.height) / ROW_HEIGHT) + OVERSCAN);
  return (
    <div
      class="scroller"
      ref={box}
      onScroll={(e) => {
        const el = e.currentTarget;
        setScroll({ top: el.scrollTop, height: el.clientHeight });
        setStick(el.scrollTop + el.clientHeight >= el.scrollHeight - ROW_HEIGHT);
      }}
    >
      <ol class="messages" style={{ height: `${messages.length * ROW_HEIGHT}px` }} aria-label="Messages">
        {messages.slice(first, last).map((m, i) => (
          <li key={m.id} class="message" style={{ top: `${(first + i) * ROW_HEIGHT}px`, height: `${ROW_HEIGHT}px` }} data-message-id={m.id}>
            <button type="button" class="row" onClick={() => onOpen(m)} aria-label={`Message ${m.id} from ${m.from} to ${m.to}: open its thread`}>
              <span class="meta">
                <span class="mid">#{m.id}</span> <strong>{m.from}</strong> → {m.to}
                {m.channel && <span class="chip">{m.channel}</span>}
                {m.claimable && <span class="chip claim">task #{m.taskId}</span>}
                {m.replyTo && <span class="dim"> ↳ #{m.replyTo}</span>}
                <span class="time">{clock(m.createdAt)}</span>
              </span>
              <span class="body">
                {m.subject && m.subject !== m.body ? `${m.subject}: ` : ''}
                {m.body}
              </span>
            </button>
          </li>
        ))}
      </ol>
    </div>
  );
}

function Composer({ store, replyTo, defaultTo, onSent }: { store: DashboardStore; replyTo?: Message; defaultTo?: string; onSent?: () => void }) {
  const [to, setTo] = useState(defaultTo ?? '');
  const [body, setBody] = useState('');
  const [channel, setChannel] = useState('');
  const [claimable, setClaimable] = useState(false);
  const [error, run] = useAction();
  const send = () =>
    run('send', async () => {
      await store.call('message/send', {
        to: to.trim(),
        body,
        from: SENDER,
        ...(channel.trim() ? { channel: channel.trim() } : {}),
        ...(claimable ? { claimable: true } : {}),
        ...(replyTo ? { replyTo: replyTo.id } : {}),
      });
      setBody('');
      onSent?.();
    });
  return (
    <form class="composer" onSubmit={(e) => (e.preventDefault(), void send())} aria-label={replyTo ? 'Reply in thread' : 'Send a message'}>
      <input aria-label="To" placeholder="to: agent id, tag:x, cap:x, label:x, broadcast" value={to} onInput={(e) => setTo(e.currentTarget.value)} required />
      {!replyTo && <input aria-label="Channel" placeholder="channel (optional)" value={channel} onInput={(e) => setChannel(e.currentTarget.value)} />}
      <textarea
        aria-label="Message"
        placeholder={replyTo ? 'Reply…' : 'Message…'}
        value={body}
        rows={2}
        onInput={(e) => setBody(e.currentTarget.value)}
        onKeyDown={(e) => e.key === 'Enter' && (e.ctrlKey || e.metaKey) && void send()}
        required
      />
      {!replyTo && (
        <label class="check">
          <input type="checkbox" checked={claimable} onChange={(e) => setClaimable(e.currentTarget.checked)} /> claimable
        </label>
      )}
      <button type="submit">{replyTo ? 'Reply' : 'Send'}</button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

export function ThreadView({ store, root, onClose }: { store: DashboardStore; root: Message; onClose: () => void }) {
  const [thread, setThread] = useState<Message[]>([]);
  const [error, run] = useAction();
  const load = () => run('thread', async () => setThread((await getWholeThread((p) => store.call('thread/get', p), root.id)).messages));
  // Reload when a message of this thread arrives.
  const count = store.messages.filter((m) => m.threadId === root.threadId).length;
  useEffect(() => void load(), [root.id, count]);
  const last = thread.at(-1) ?? root;
  return (
    <aside class="drawer" aria-label={`Thread of message ${root.threadId}`} onKeyDown={(e) => e.key === 'Escape' && onClose()}>
      <header>
        <h3>Thread #{root.threadId}</h3>
        <button type="button" onClick={onClose} aria-label="Close thread">
          ✕
        </button>
      </header>
      {error && <p class="error">{error}</p>}
      <ol class="thread">
        {thread.map((m) => (
          <li key={m.id} data-message-id={m.id}>
            <div class="meta">
              #{m.id} <strong>{m.from}</strong> → {m.to} <span class="time">{clock(m.createdAt)}</span>
            </div>
            <div class="body">{m.body}</div>
          </li>
        ))}
      </ol>
      <Composer store={store} replyTo={last} defaultTo={last.from === SENDER ? last.to : last.from} />
    </aside>
  );
}

export function MessagesPanel({ store, onOpen }: { store: DashboardStore; onOpen: (m: Message) => void }) {
  const [channel, setChannel] = useState('');
  const [agent, setAgent] = useState('');
  const channels = [...new Set(store.messages.map((m) => m.channel).filter((c): c is string => Boolean(c)))].sort();
  const shown = store.messages.filter((m) => (!channel || m.channel === channel) && (!agent || m.from === agent || m.to === agent));
  return (
    <section class="panel messages-panel" aria-labelledby="messages-h">
      <header>
        <h2 id="messages-h">
          Messages <span class="count">{shown.length}</span>
        </h2>
        <div class="filters">
          <select aria-label="Filter messages by channel" value={channel} onChange={(e) => setChannel(e.currentTarget.value)}>
            <option value="">all channels</option>
            {channels.map((c) => (
              <option value={c}>{c}</option>
            ))}
          </select>
          <select aria-label="Filter messages by agent" value={agent} onChange={(e) => setAgent(e.currentTarget.value)}>
            <option value="">all agents</option>
            {[...store.agents.keys()].sort().map((id) => (
              <option value={id}>{id}</option>
            ))}
          </select>
        </div>
      </header>
      <SearchBox store={store} channel={channel} onOpen={onOpen} />
      <MessageList messages={shown} onOpen={onOpen} />
      <Composer store={store} />
    </section>
  );
}
