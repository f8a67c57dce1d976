/**
 * @module container
 * The container: `Container.start(options)` (or `startContainer`) runs one in this process; the `keynode
 * start` command runs one as its own process.
 */
import { Container } from './container.js';
import type { ContainerOptions } from './config.js';

export { Container } from './container.js';
export { DEFAULTS, normalizeOptions, optionsFromEnv, parsePeers, type ContainerOptions } from './config.js';
export { KeynodeError } from '../protocol/index.js';

export function startContainer(options: Partial<ContainerOptions> = {}): Promise<Container> {
  return Container.start(options);
}
