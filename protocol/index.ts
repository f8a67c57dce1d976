/**
 * @module protocol
 * Identities, node IDs and URLs, signed envelopes, MessagePack codec, stdio frames, policies and error
 * codes. Knows no process, socket or database.
 */
export * from './errors.js';
export * from './ids.js';
export * from './keys.js';
export * from './identity.js';
export * from './codec.js';
export * from './envelope.js';
export * from './frames.js';
export * from './eval-frames.js';
export * from './messages.js';
export * from './policy.js';
export * from './grants.js';
export * from './session.js';
export * from './sealed.js';
export * from './redirect.js';
export * from './load.js';
