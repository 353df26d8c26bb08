import type { MethodName, MethodParams, MethodResult } from '../../../protocol/index.js';
import type { CallContext } from '../context.js';
import * as agent from './agent.js';
import * as event from './event.js';
import * as lease from './lease.js';
import * as message from './message.js';
import * as task from './task.js';

export type Handler<M extends MethodName> = (ctx: CallContext, params: MethodParams<M>) => MethodResult<M> | Promise<MethodResult<M>>;

/** One handler per method of the contract; the compiler checks none is missing. */
export const HANDLERS: { [M in MethodName]: Handler<M> } = {
  'agent/register': agent.register,
  'agent/update': agent.update,
  'agent/heartbeat': agent.heartbeat,
  'agent/list': agent.list,
  'message/send': message.send,
  'message/list': message.list,
  'message/search': message.search,
  'message/read': message.read,
  'message/get': message.get,
  'message/ack': message.ack,
  'message/claim': message.claim,
  'thread/get': message.thread,
  'task/create': task.create,
  'task/claim': task.claim,
  'task/update': task.update,
  'task/release': task.release,
  'task/list': task.list,
  'task/get': task.get,
  'lease/acquire': lease.acquire,
  'lease/renew': lease.renew,
  'lease/release': lease.release,
  'lease/list': lease.list,
  'event/list': event.list,
  'stream/subscribe': event.subscribe,
};
