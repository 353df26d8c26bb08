import type { Command } from 'commander';
import type { Message } from '../../../protocol/common.js';
import type { Warning } from '../../../protocol/methods/message.js';
import { externalSender } from '../../../protocol/senders.js';
import { getWholeThread } from '../../pages.js';
import { type CliContext, wholeNumber } from '../context.js';
import { followForever } from '../follow.js';
import { hitLines, messageLine } from '../format.js';

type Run = (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>;

const FOLLOW_WAIT_SEC = 30;

function warningText(w: Warning): string {
  if (w.reason === 'no_recipients') return 'no agent matched the target (a claimable task still waits for one)';
  if (w.reason === 'offline') return `${w.agentId} is offline: it gets the message when it comes back`;
  return `${w.agentId} is not ready: the message waits in its inbox`;
}

export function messageCommands(program: Command, run: Run): void {
  program
    .command('send')
    .description('send a message: TO is an agent id, tag:X, cap:X, label:X or broadcast')
    .argument('<to>', 'recipient')
    .argument('<body>', 'text of the message')
    .option('--channel <channel>', 'channel to scope a fan-out to')
    .option('--reply-to <id>', 'message id this answers (joins its thread)', wholeNumber)
    .option('--claimable', 'make it claimable work (one recipient may claim it)')
    .option('--subject <subject>', 'subject line')
    .action(
      run(async (ctx, to: string, body: string, o: { channel?: string; replyTo?: number; claimable?: boolean; subject?: string }) => {
        const identity = ctx.optionalIdentity();
        const r = await ctx.http.call(
          'message/send',
          {
            to,
            body,
            ...(o.channel ? { channel: o.channel } : {}),
            ...(o.replyTo !== undefined ? { replyTo: o.replyTo } : {}),
            ...(o.claimable ? { claimable: true } : {}),
            ...(o.subject ? { subject: o.subject } : {}),
            ...(identity ? {} : { from: externalSender('cli') }),
          },
          identity ?? undefined,
        );
        ctx.print(r, () => {
          const lines = [`sent #${r.message.id} to ${r.recipients.length ? r.recipients.join(', ') : 'nobody'}${r.message.taskId ? `; task #${r.message.taskId}` : ''}`];
          for (const w of r.warnings) lines.push(ctx.color.yellow(`warning: ${warningText(w)}`));
          return lines.join('\n');
        });
      }),
    );

  program
    .command('inbox')
    .description("the agent's messages (needs --as)")
    .option('--unread', 'only messages not marked read')
    .option('--since <id>', 'only messages after this id', wholeNumber)
    .option('--limit <n>', 'at most this many', wholeNumber)
    .option('--mark-read', 'mark what is shown as read')
    .option('--follow', 'keep waiting for new messages (long-poll) until interrupted')
    .action(
      run(async (ctx, o: { unread?: boolean; since?: number; limit?: number; markRead?: boolean; follow?: boolean }) => {
        const identity = ctx.identity();
        let since = o.since;
        const show = async (messages: Message[]) => {
          for (const m of messages) ctx.io.out(ctx.json ? JSON.stringify(m) : messageLine(m, ctx.color));
          if (o.markRead && messages.length) await ctx.http.call('message/read', { ids: messages.map((m) => m.id) }, identity);
        };
        const first = await ctx.http.inbox(identity, { ...(since !== undefined ? { since } : {}), unread: Boolean(o.unread), ...(o.limit ? { limit: o.limit } : {}) });
        if (!o.follow) {
          if (ctx.json) ctx.io.out(JSON.stringify(first));
          else if (first.messages.length === 0) ctx.io.out(o.unread ? 'no unread messages' : 'no messages');
          else for (const m of first.messages) ctx.io.out(messageLine(m, ctx.color));
          if (o.markRead && first.messages.length) await ctx.http.call('message/read', { ids: first.messages.map((m) => m.id) }, identity);
          return;
        }
        await show(first.messages);
        since = first.messages.at(-1)?.id ?? first.cursor;
        // `since` only moves past what was shown: after a relay restart nothing is shown twice.
        await followForever(ctx, async () => {
          const next = await ctx.http.inbox(identity, { since: since!, waitSec: FOLLOW_WAIT_SEC });
          await show(next.messages);
          since = next.messages.at(-1)?.id ?? Math.max(since!, next.cursor);
        });
      }),
    );

  program
    .command('search')
    .description("find messages by words in subject and body, best first (an agent's inbox with --as, else every message)")
    .argument('<query>', 'words (all must match); "a phrase" in quotes; word* for a prefix')
    .option('--channel <channel>', 'only this channel')
    .option('--from <sender>', 'only from this sender (agent id or ext:NAME)')
    .option('--to <target>', 'only sent to exactly this target')
    .option('--since <id>', 'only messages after this id', wholeNumber)
    .option('--limit <n>', 'at most this many hits (default 20, at most 100)', wholeNumber)
    .option('--after <cursor>', 'the next page: the cursor a previous search printed')
    .action(
      run(async (ctx, query: string, o: { channel?: string; from?: string; to?: string; since?: number; limit?: number; after?: string }) => {
        const identity = ctx.optionalIdentity();
        const r = await ctx.http.call(
          'message/search',
          {
            query,
            ...(o.channel ? { channel: o.channel } : {}),
            ...(o.from ? { from: o.from } : {}),
            ...(o.to ? { to: o.to } : {}),
            ...(o.since !== undefined ? { since: o.since } : {}),
            ...(o.limit ? { limit: o.limit } : {}),
            ...(o.after ? { after: o.after } : {}),
          },
          identity ?? undefined,
        );
        ctx.print(r, () => {
          if (r.hits.length === 0) return 'no messages found';
          const lines = r.hits.map((h) => hitLines(h, ctx.color));
          if (r.nextCursor) lines.push(ctx.color.dim(`more: add --after ${r.nextCursor}`));
          return lines.join('\n');
        });
      }),
    );

  program
    .command('threads')
    .description('every message of the thread holding message ID')
    .argument('<id>', 'any message id of the thread', wholeNumber)
    .action(
      run(async (ctx, id: number) => {
        const r = await getWholeThread((p) => ctx.http.call('thread/get', p), id);
        ctx.print(r, () => [`thread #${r.threadId} (${r.messages.length} messages)`, ...r.messages.map((m) => messageLine(m, ctx.color, 400))].join('\n'));
      }),
    );
}
