/**
 * @module lifetimes
 * Lifetime values and the deadline schedule that enforces them.
 */
export { Lifetime, callSpec, nodeName, type Call, type NodeName } from './lifetime.js';
