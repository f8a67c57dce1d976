#!/bin/sh
//usr/bin/env true; exec env MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-131072}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-131072}" node "$0" "$@"
/**
 * @module cli/main
 * `keynode start` runs a container; the other commands administer a running one with the operator identity.
 * Data goes to stdout, messages to stderr; exit codes in cli/output.ts (EXIT) and the README.
 *
 * Lines 1-2 are both shell and JavaScript: run as a program, /bin/sh sets the allocator's environment
 * (cli/allocator.ts says why) and execs node on this file, where line 2 is a comment; `node main.js` skips it.
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Container, ContainerOptions } from '../container/index.js';
import { adminCommands } from './admin.js';
import { backupCommands } from './backup.js';
import { dashboardCommand } from './dashboard.js';
import { identityCommands } from './identity.js';
import { migrationCommands } from './migration.js';
import { peersCommand } from './peers.js';
import { EXIT, report } from './output.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}

function mib(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number of MiB`);
    return n;
  };
}

const program = new Command('keynode')
  .description('A node container runtime: ship computations to sandboxed nodes named by Ed25519 keys.')
  .version(version, '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage));

program
  .command('start')
  .description('Run a container in the foreground (JSON logs on stdout; SIGTERM stops it gracefully).')
  .addOption(new Option('--host <host>', 'interface to listen on').env('KEYNODE_HOST'))
  .addOption(new Option('--port <port>', 'port (0 picks a free one)').argParser(int('port')).env('KEYNODE_PORT'))
  .addOption(new Option('--data <dir>', 'data directory (store, operator.key, master.key)').env('KEYNODE_DATA'))
  .addOption(new Option('--public-url <url>', 'URL peers reach this container at').env('KEYNODE_PUBLIC_URL'))
  .addOption(new Option('--peers <list>', 'the other containers of the fleet: URLs, or dns:<name>:<port> (comma-separated)'))
  .addOption(new Option('--peer-ids <list>', 'container IDs accepted as peers (comma-separated); unset: pinned on first contact'))
  .addOption(new Option('--fleet-refresh-ms <ms>', 'ask each peer for its load this often').argParser(int('fleet-refresh-ms')).env('KEYNODE_FLEET_REFRESH_MS'))
  .addOption(new Option('--fleet-resolve-ms <ms>', 'resolve dns: peers again this often').argParser(int('fleet-resolve-ms')).env('KEYNODE_FLEET_RESOLVE_MS'))
  .addOption(new Option('--idle-timeout-ms <ms>', 'sleep idle nodes after this long').argParser(int('idle-timeout-ms')).env('KEYNODE_IDLE_TIMEOUT_MS'))
  .addOption(new Option('--tombstone-ttl-ms <ms>', "a destroyed node's ID answers ERR_NODE_DESTROYED this long (default 30 days)").argParser(int('tombstone-ttl-ms')).env('KEYNODE_TOMBSTONE_TTL_MS'))
  .addOption(new Option('--eval-timeout-ms <ms>', 'default sandbox.timeoutMs').argParser(int('eval-timeout-ms')).env('KEYNODE_EVAL_TIMEOUT_MS'))
  .addOption(new Option('--memory-mb <mb>', 'default sandbox.memoryMB').argParser(int('memory-mb')).env('KEYNODE_MEMORY_MB'))
  .addOption(new Option('--pool-min <n>', 'blank workers always kept ready').argParser(int('pool-min')).env('KEYNODE_POOL_MIN'))
  .addOption(new Option('--pool-max <n>', 'blank workers at most, under bursts of wakes').argParser(int('pool-max')).env('KEYNODE_POOL_MAX'))
  .addOption(new Option('--worker-reuse <mode>', "reuse a sleeping node's worker for its tenant's next node").choices(['tenant', 'off']).env('KEYNODE_WORKER_REUSE'))
  .addOption(new Option('--worker-max-nodes <n>', 'nodes one worker serves before it is retired').argParser(int('worker-max-nodes')).env('KEYNODE_WORKER_MAX_NODES'))
  .addOption(new Option('--max-spare-workers <n>', 'scrubbed workers kept for their tenants').argParser(int('max-spare-workers')).env('KEYNODE_MAX_SPARE_WORKERS'))
  .addOption(new Option('--max-body-bytes <n>', 'largest request body').argParser(int('max-body-bytes')).env('KEYNODE_MAX_BODY_BYTES'))
  .addOption(new Option('--capacity-nodes <n>', 'root budget: nodes').argParser(int('capacity-nodes')))
  .addOption(new Option('--capacity-awake <n>', 'root budget: awake nodes').argParser(int('capacity-awake')))
  .addOption(new Option('--capacity-memory-mb <n>', 'root budget: memory of awake nodes').argParser(int('capacity-memory-mb')))
  .addOption(new Option('--capacity-storage-mb <mb>', 'root budget: disk all nodes may fill (MiB, fractions allowed; default 10240)').argParser(mib('capacity-storage-mb')))
  .addOption(new Option('--fsync', 'fsync every commit (survive power loss, not only process kill)').env('KEYNODE_FSYNC'))
  .addOption(new Option('--tls-cert <file>', 'serve HTTPS with this certificate chain (PEM); node URLs become https://').env('KEYNODE_TLS_CERT'))
  .addOption(new Option('--tls-key <file>', 'private key (PEM) of --tls-cert').env('KEYNODE_TLS_KEY'))
  .addOption(new Option('--tls-ca <file>', 'certificates (PEM) to trust for peer containers over HTTPS').env('KEYNODE_TLS_CA'))
  .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent').env('KEYNODE_LOG_LEVEL'))
  .addOption(new Option('--dashboard <on|off>', 'the operator dashboard at /dashboard/ (opened with `keynode dashboard`)').choices(['on', 'off']).env('KEYNODE_DASHBOARD'))
  .action(async (flags: Record<string, unknown>) => {
    // Loaded here so admin commands start fast: they never need the container's own dependencies.
    const { Container, DEFAULTS, optionsFromEnv, parsePeers } = await import('../container/index.js');
    let options: Partial<ContainerOptions>;
    try {
      options = { ...optionsFromEnv() };
    } catch (e) {
      report(e);
      process.exit(EXIT.usage);
    }
    const keys = ['host', 'port', 'data', 'publicUrl', 'idleTimeoutMs', 'tombstoneTtlMs', 'evalTimeoutMs', 'memoryMB', 'poolMin', 'poolMax', 'workerReuse', 'workerMaxNodes', 'maxSpareWorkers', 'maxBodyBytes', 'logLevel', 'dashboard', 'tlsCert', 'tlsKey', 'tlsCa', 'fleetRefreshMs', 'fleetResolveMs'] as const;
    for (const key of keys) {
      const flag = key === 'memoryMB' ? flags.memoryMb : flags[key];
      if (flag !== undefined) (options as Record<string, unknown>)[key] = typeof DEFAULTS[key as keyof ContainerOptions] === 'number' ? Number(flag) : flag;
    }
    if (flags.fsync) options.fsync = true;
    if (typeof flags.peers === 'string') options.peers = parsePeers(flags.peers);
    if (typeof flags.peerIds === 'string') options.peerIds = parsePeers(flags.peerIds);
    const cap = { ...DEFAULTS.capacity, ...options.capacity };
    if (flags.capacityNodes !== undefined) cap.maxNodes = Number(flags.capacityNodes);
    if (flags.capacityAwake !== undefined) cap.maxAwake = Number(flags.capacityAwake);
    if (flags.capacityMemoryMb !== undefined) cap.memoryMB = Number(flags.capacityMemoryMb);
    if (flags.capacityStorageMb !== undefined) cap.storageMB = Number(flags.capacityStorageMb);
    options.capacity = cap;
    let container: Container;
    try {
      container = await Container.start(options);
    } catch (e) {
      report(e);
      process.exit(process.exitCode ?? EXIT.failure);
    }
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      container.logger.info({ signal }, 'stopping');
      container.close().then(
        () => process.exit(0),
        (e: unknown) => {
          process.stderr.write(`keynode: shutdown failed: ${(e as Error).message}\n`);
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

adminCommands(program);
migrationCommands(program);
identityCommands(program);
dashboardCommand(program);
backupCommands(program);
peersCommand(program);

await program.parseAsync(process.argv);
