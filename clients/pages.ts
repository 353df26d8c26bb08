import type { AgentListParams, AgentListResult } from '../protocol/methods/agent.js';
import type { ThreadGetParams, ThreadGetResult } from '../protocol/methods/message.js';
import type { TaskGetParams, TaskGetResult } from '../protocol/methods/task.js';
import type { Agent } from '../protocol/common.js';

/** Every agent matching `filter`, following agent/list's `nextCursor` page by page. */
export async function listAllAgents(call: (params: AgentListParams) => Promise<AgentListResult>, filter: Omit<AgentListParams, 'after' | 'limit'> = {}): Promise<Agent[]> {
  const agents: Agent[] = [];
  let after: string | undefined;
  do {
    const page = await call({ ...filter, limit: 1000, ...(after !== undefined ? { after } : {}) });
    agents.push(...page.agents);
    after = page.nextCursor;
  } while (after !== undefined);
  return agents;
}

/** Every message of a thread, following thread/get's `more` page by page. */
export async function getWholeThread(call: (params: ThreadGetParams) => Promise<ThreadGetResult>, id: number): Promise<ThreadGetResult> {
  const first = await call({ id });
  const messages = [...first.messages];
  let more = first.more;
  while (more && messages.length > 0) {
    const page = await call({ id, since: messages.at(-1)!.id });
    messages.push(...page.messages);
    more = page.more && page.messages.length > 0;
  }
  return { threadId: first.threadId, messages };
}

/** A task with all its events and callbacks, following `more` pages of `task/get`. */
export async function getWholeTask(call: (params: TaskGetParams) => Promise<TaskGetResult>, id: number): Promise<TaskGetResult> {
  const first = await call({ id });
  const events = [...first.events];
  const callbacks = [...first.callbacks];
  let { more, task } = first;
  while (more && events.length > 0) {
    const page = await call({ id, since: events.at(-1)!.id });
    events.push(...page.events);
    callbacks.push(...page.callbacks);
    task = page.task;
    more = page.more && page.events.length > 0;
  }
  return { task, events, callbacks };
}
