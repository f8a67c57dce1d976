/**
 * @module client/placement
 * Where a fleet client spawns: the members of the fleet (the URLs it was given, and the members those
 * containers report), each one's last load report (authenticated by that container, at most `maxAgeMs`
 * old), and the choice itself.
 *
 * The choice is the power of two choices: for each new node, two members are drawn at random among those
 * that answered and have room, and the less loaded one takes it. Loads are a fraction of a second old and
 * other clients place at the same time: sending every spawn to the least loaded member herds them all onto
 * it until the next report, while two random choices spread them and still bring the most loaded member
 * within a small constant of the mean (Mitzenmacher, "The power of two choices in randomized load
 * balancing"). Between reports the client counts what it placed itself, so a burst from one client spreads
 * evenly too. A member that lies about its load can draw at most the share of the pairs it is in (2/n),
 * never all spawns.
 *
 * Load, for a spawn: the share of the asker's node budget there already used (new nodes are asleep, so
 * what they take is budget), unless the member is hot (awake nodes or memory above 90% of its capacity, or
 * a deep eval queue), which ranks after every member that is not.
 */
import { KeynodeError, MAX_MEMBERS, originOf, type LoadReport } from '../protocol/index.js';

export type Placement =
  /** By load, over the fleet's members (the default for a fleet client). */
  | 'load'
  /** On the container of this node (its parent, a peer it talks to most): calls between them stay local. */
  | { near: string | { readonly url: string } }
  /** On this container (an origin, or any URL on it). */
  | { on: string };

const HOT = 0.9;
/** Evals waiting per awake node past which a member counts as hot. */
const HOT_QUEUE_PER_AWAKE = 16;

interface Member {
  url: string;
  report?: LoadReport;
  at: number;
  /** Nodes this client placed there since the report. */
  placed: number;
  /** Why it is skipped, until its next report: unreachable, refused, or full. */
  skip?: string;
}

/** Asks one member for its load (in the client's session with it); throws when it cannot, or when `signal` fires. */
export type AskLoad = (url: string, signal: AbortSignal) => Promise<LoadReport>;

/** A member that takes longer than this to report is skipped until it answers in time: one that hangs must not hold up the others' reports. */
const ASK_TIMEOUT_MS = 5000;

export class Placer {
  readonly #members = new Map<string, Member>();
  readonly #ask: AskLoad;
  readonly #maxAgeMs: number;
  #refreshing: Promise<void> | undefined;

  constructor(urls: readonly string[], ask: AskLoad, maxAgeMs: number) {
    this.#ask = ask;
    this.#maxAgeMs = maxAgeMs;
    for (const u of urls) this.#add(u);
  }

  /** Every member's URL, and what the client last knew of it. */
  members(): { url: string; report?: LoadReport; ageMs?: number; skip?: string }[] {
    const now = Date.now();
    return [...this.#members.values()].map((m) => ({
      url: m.url,
      ...(m.report ? { report: m.report, ageMs: now - m.at } : {}),
      ...(m.skip ? { skip: m.skip } : {}),
    }));
  }

  #add(url: string): void {
    const origin = originOf(url);
    if (origin && !this.#members.has(origin) && this.#members.size < MAX_MEMBERS) this.#members.set(origin, { url: origin, at: 0, placed: 0 });
  }

  /** Asks every member for its load (one round at a time), and adds the members their reports name. */
  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        await Promise.all(
          [...this.#members.values()].map(async (m) => {
            try {
              const report = await this.#ask(m.url, AbortSignal.timeout(Math.max(ASK_TIMEOUT_MS, this.#maxAgeMs)));
              m.report = report;
              m.at = Date.now();
              m.placed = 0;
              delete m.skip;
              for (const peer of report.members) if (peer.state === 'up') this.#add(peer.url);
            } catch (e) {
              m.at = Date.now();
              m.skip = `${(e as { code?: string }).code ?? 'ERR_UNAVAILABLE'}: ${(e as Error).message}`;
            }
          }),
        );
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /**
   * Asks again when a report is stale: in the background while some member has room (a spawn never waits on
   * a member that hangs), and waited for only when none is known to have any.
   */
  async #fresh(): Promise<void> {
    const now = Date.now();
    const all = [...this.#members.values()];
    if (!all.some((m) => now - m.at >= this.#maxAgeMs)) return;
    const round = this.refresh();
    if (!all.some((m) => this.#left(m) > 0)) await round;
  }

  /** Marks a member unusable until its next report (a spawn there failed). */
  skip(url: string, why: string): void {
    const m = this.#members.get(url);
    if (m) m.skip = why;
  }

  /** Room left there for this client, as far as it knows. */
  #left(m: Member): number {
    const r = m.report;
    if (!r?.room || m.skip) return 0;
    return Math.max(0, r.room.maxNodes - r.room.nodes - m.placed);
  }

  #score(m: Member): number {
    const r = m.report!;
    const room = r.room!;
    const used = (room.nodes + m.placed) / Math.max(1, room.maxNodes);
    const hot = r.awake >= HOT * r.maxAwake || r.memoryMB >= HOT * r.maxMemoryMB || r.queued > HOT_QUEUE_PER_AWAKE * Math.max(1, r.awake);
    return used + (hot ? 1 : 0);
  }

  /**
   * Chooses a member for each of `count` new nodes; returns how many go where. Throws ERR_BUDGET_EXHAUSTED
   * when the members that answered have no room for them, ERR_UNAVAILABLE when none answered.
   */
  async place(count: number): Promise<Map<string, number>> {
    await this.#fresh();
    const out = new Map<string, number>();
    let open = [...this.#members.values()].filter((m) => this.#left(m) > 0);
    for (let i = 0; i < count; i++) {
      if (!open.length) throw this.#noRoom(count);
      const a = open[Math.floor(Math.random() * open.length)]!;
      const b = open.length > 1 ? pickOther(open, a) : a;
      const m = this.#score(a) <= this.#score(b) ? a : b;
      m.placed++;
      out.set(m.url, (out.get(m.url) ?? 0) + 1);
      if (this.#left(m) === 0) open = open.filter((x) => x !== m);
    }
    return out;
  }

  /** Gives back placements that were not made (their spawn failed), so they do not count as load. */
  unplace(url: string, count: number): void {
    const m = this.#members.get(url);
    if (m) m.placed = Math.max(0, m.placed - count);
  }

  #noRoom(count: number): KeynodeError {
    const all = [...this.#members.values()];
    const why = all.map((m) => `${m.url}: ${m.skip ?? (m.report?.room ? `${Math.max(0, m.report.room.maxNodes - m.report.room.nodes - m.placed)} nodes left in this client's budget` : 'no budget for this client')}`).join('; ');
    const answered = all.some((m) => m.report && !m.skip?.startsWith('ERR_UNAVAILABLE'));
    return new KeynodeError(answered ? 'ERR_BUDGET_EXHAUSTED' : 'ERR_UNAVAILABLE', `no member of the fleet has room for ${count} more node(s) of this client (${why})`);
  }
}

function pickOther<T>(list: T[], not: T): T {
  for (;;) {
    const x = list[Math.floor(Math.random() * list.length)]!;
    if (x !== not) return x;
  }
}
