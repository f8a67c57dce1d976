/**
 * @module cli/allocator
 * glibc's allocator settings for the container's own process. `keynode` is a shell line that sets them, unless
 * the environment already has them, and execs node on the same file (cli/main.ts, line 2): they must be in the
 * environment when the process starts, and an exec keeps the container the one process that `kill -9` ends.
 *
 * Why (measured with 1M sleeping nodes spawned, bench/sleepers.ts): with the defaults, every thread that
 * allocates gets an arena of its own (up to 8 per core: the libuv pool writing to LevelDB, its compaction
 * thread, the key mint's threads, V8's) and keeps its high-water mark; each libuv thread that once wrote a
 * memtable kept its ~7 MB. And glibc raises its mmap threshold to the largest block freed (a spawn's
 * multi-megabyte LevelDB batch), after which such blocks come from the heap, whose top a single live chunk pins:
 * the heap and arenas held ~130 MB of RSS for ~40 MB in use. Two arenas and a fixed threshold (blocks of 128 KB
 * and more get their own mapping, returned when freed) hold ~30 MB.
 */
export const CONTAINER_ALLOCATOR_ENV: Readonly<Record<string, string>> = Object.freeze({
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '131072',
  MALLOC_TRIM_THRESHOLD_: '131072',
});
