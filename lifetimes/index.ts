/**
 * @module lifetimes
 * Lifetime values and the deadline schedule that enforces them.
 */
export { Lifetime, CALL_NODE, callSpec, nodeName, type Call, type NodeName } from './lifetime.js';
export { DeadlineSchedule, type Deadline, type DeadlineKind, type DeadlineHandler, type DeadlineWork } from './schedule.js';
