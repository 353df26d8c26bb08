/**
 * Under `npm start` the relay runs as `npm → sh -c → node`. npm passes a SIGTERM on to the shell,
 * and the shell dies without passing it on: the relay was left running on its port, adopted by
 * init (seen with npm 11 and Debian's dash). So when npm started this process, a relay whose
 * parent has gone stops as if it had been sent `signal`. A relay started any other way (a service
 * manager, `nohup agent-relay serve &`) is left alone when its parent exits.
 */
const CHECK_EVERY_MS = 500;

export function stopWhenNpmParentExits(env: NodeJS.ProcessEnv, stop: (signal: string) => void): void {
  if (!env.npm_lifecycle_event || process.platform === 'win32') return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    stop('parent npm exited');
  }, CHECK_EVERY_MS);
  timer.unref();
}
