/**
 * Round-robin frame dispatch. uWS hands over every frame a socket has buffered in one go, so a
 * client's burst (up to its rate-limit burst, 4000 frames by default) used to run back to back
 * while every other connection's frames waited behind it. Here a connection may start at most
 * `perTurn` frames per event-loop turn; the rest wait, in order, for the next turns, which serve
 * each waiting connection `perTurn` frames in turn. Frames of one connection keep their order.
 * Found by the reliability suite: a client flooding within its burst raised another
 * connection's p99 several-fold.
 */
export class FairDispatch<S extends { readonly closed: boolean }> {
  private readonly waiting = new Map<S, { frames: string[]; sizes: number[]; bytes: number }>();
  private waitingFrames = 0;
  private readonly started = new Map<S, number>();
  /** Connections to close once what they have waiting has run; then their frames are refused. */
  private readonly closing = new Map<S, () => void>();
  private closeNext: Array<() => void> = [];
  private scheduled = false;

  constructor(
    private readonly run: (session: S, text: string) => void,
    private readonly perTurn: number,
    /** Bytes one connection may have waiting; past it `onOverflow` runs and its frames are dropped. */
    private readonly maxWaitingBytes: number,
    private readonly onOverflow: (session: S) => void,
  ) {}

  /** One frame of `byteLength` bytes on the wire (the waiting bound is in bytes, as frames are measured). */
  submit(session: S, text: string, byteLength: number): void {
    if (this.closing.has(session)) return;
    const queue = this.waiting.get(session);
    const n = this.started.get(session) ?? 0;
    this.schedule();
    if (!queue && n < this.perTurn) {
      this.started.set(session, n + 1);
      this.run(session, text);
      return;
    }
    this.waitingFrames++;
    if (!queue) {
      this.waiting.set(session, { frames: [text], sizes: [byteLength], bytes: byteLength });
      return;
    }
    queue.frames.push(text);
    queue.sizes.push(byteLength);
    queue.bytes += byteLength;
    if (queue.bytes > this.maxWaitingBytes) {
      this.drop(session);
      this.onOverflow(session);
    }
  }

  private drop(session: S): void {
    this.waitingFrames -= this.waiting.get(session)?.frames.length ?? 0;
    this.waiting.delete(session);
  }

  /**
   * Close a connection (a rate-limit offender) after the frames it was already admitted have run,
   * one turn later so their answers are written first; it may send nothing more meanwhile.
   */
  closeWhenDrained(session: S, close: () => void): void {
    if (this.closing.has(session)) return;
    this.closing.set(session, close);
    this.schedule();
  }

  /** Frames waiting their turn across all connections. */
  get backlog(): number {
    return this.waitingFrames;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.turn());
  }

  private turn(): void {
    this.scheduled = false;
    this.started.clear();
    for (const close of this.closeNext.splice(0)) close();
    for (const [session, queue] of [...this.waiting]) {
      if (session.closed) {
        this.drop(session);
        continue;
      }
      const take = queue.frames.splice(0, this.perTurn);
      this.waitingFrames -= take.length;
      for (const size of queue.sizes.splice(0, take.length)) queue.bytes -= size;
      if (queue.frames.length === 0) this.waiting.delete(session);
      this.started.set(session, take.length);
      for (const text of take) this.run(session, text);
    }
    for (const [session, close] of [...this.closing]) {
      if (this.waiting.has(session) && !session.closed) continue;
      this.closing.delete(session);
      this.closeNext.push(close);
    }
    // Another turn drains what still waits, closes what is due, or at least forgets the counts.
    if (this.waiting.size > 0 || this.started.size > 0 || this.closeNext.length > 0 || this.closing.size > 0) this.schedule();
  }
}
