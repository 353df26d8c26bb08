import { StartupError } from '../startup-error.js';

/**
 * `agent-relay migrate` will not (or could not) copy: the message says what was wrong and what to
 * do, and is printed as one line without a stack.
 */
export class MigrateRefused extends StartupError {}
