/**
 * @module container/migration/pause
 * A test hook: `KEYNODE_TEST_MOVE_PAUSE=<phase>` stops every move at that phase for good, after saying so
 * in the log ("move paused"), so a crash test can kill -9 a container at exactly that point by waiting for
 * the line rather than sleeping. Unset, a phase costs one comparison.
 */
export type MovePhase =
  /** Source: the subtree's evals are held and its processes asleep; nothing is copied yet. */
  | 'quiesced'
  /** Source: the target holds the prepared move durably; the source has not committed its forwarding record. */
  | 'prepared'
  /** Source: the forwarding record is committed; the target has not been told to activate. */
  | 'forwarded'
  /** Target: the prepared move is durable; the source has not had the answer. */
  | 'target-prepared'
  /** Target: told to activate; nothing of the activation is written yet. */
  | 'target-activating';

export type PhaseHook = (phase: MovePhase, node: string) => Promise<void>;

export function pauseHook(phase: string | undefined, log: (phase: MovePhase, node: string) => void): PhaseHook | undefined {
  if (!phase) return undefined;
  return async (at, node) => {
    if (at !== phase) return;
    log(at, node);
    await new Promise<never>(() => {});
  };
}
