import type { AgentListParams, AgentListResult } from '../protocol/methods/agent.js';
import type { Agent } from '../protocol/common.js';

/** Every agent matching `filter`, following agent/list's `nextCursor` page by page. */
export async function listAllAgents(
  call: (params: AgentListParams) => Promise<AgentListResult>,
  filter: Omit<AgentListParams, 'after' | 'limit'> = {},
): Promise<Agent[]> {
  const agents: Agent[] = [];
  let after: string | undefined;
  do {
    const page = await call({ ...filter, limit: 1000, ...(after !== undefined ? { after } : {}) });
    agents.push(...page.agents);
    after = page.nextCursor;
  } while (after !== undefined);
  return agents;
}
