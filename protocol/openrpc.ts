import { z } from 'zod';
import { METHODS } from './method-table.js';
import { NOTIFICATIONS } from './notifications.js';
import { ERRORS } from './errors.js';

export const PROTOCOL_VERSION = '1';

function jsonSchema(schema: z.ZodType): unknown {
  // 'input' for params: optional fields with defaults are optional to the caller.
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
}

/** The OpenRPC document answered by rpc.discover, generated from the method table. */
export function buildOpenRpcDocument(version: string): Record<string, unknown> {
  return {
    openrpc: '1.3.2',
    info: { title: 'Agent Relay', version, description: `Agent Relay protocol version ${PROTOCOL_VERSION}` },
    methods: Object.entries(METHODS).map(([name, m]) => ({
      name,
      summary: m.summary,
      paramStructure: 'by-name',
      params: [{ name: 'params', required: true, schema: jsonSchema(m.params) }],
      result: { name: 'result', schema: z.toJSONSchema(m.result, { io: 'output', unrepresentable: 'any' }) },
      'x-auth': m.auth,
    })),
    components: {
      errors: Object.fromEntries(Object.entries(ERRORS).map(([k, e]) => [k, { code: e.code, message: e.message }])),
      'x-notifications': Object.fromEntries(Object.entries(NOTIFICATIONS).map(([name, s]) => [name, z.toJSONSchema(s, { io: 'output', unrepresentable: 'any' })])),
    },
  };
}
