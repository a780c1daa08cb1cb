import { kernelFailureIn, summaryLine, type GuestRunResult } from './guest-run.js';

const booted: GuestRunResult = {
  kernel: '6.12',
  release: '6.12.118+deb13-amd64',
  outcome: { kind: 'exited', exitCode: 0 },
  bootSeconds: 9,
  durationSeconds: 172.2,
  outDir: '/out/6.12',
};

describe('kernelFailureIn', () => {
  it('finds the kernel reporting a failure on the console', () => {
    const console = [
      '[    0.000000] Linux version 6.12.118+deb13-amd64',
      'kernel-matrix: guest up: kernel 6.12.118+deb13-amd64, 9.4 s since boot',
      '[   78.120000] Out of memory: Killed process 412 (bpftrace) total-vm:912000kB',
      '[   78.300000] Kernel panic - not syncing: Attempted to kill init!',
    ].join('\n');
    expect(kernelFailureIn(console)).toContain('Out of memory');
  });

  it('finds nothing on the console of a guest the emulator lost', () => {
    const console = [
      '[    0.000000] Linux version 6.12.118+deb13-amd64',
      'kernel-matrix: guest up: kernel 6.12.118+deb13-amd64, 9.4 s since boot',
      'prove: auto: starting the agent (--probe-mode auto --netns-pid 330)',
    ].join('\n');
    expect(kernelFailureIn(console)).toBeUndefined();
  });
});

describe('summaryLine', () => {
  it('says when a kernel passed on its second boot, and how the first ended', () => {
    const first: GuestRunResult = {
      ...booted,
      outcome: { kind: 'guest-failed', virtmeExitCode: 255, ranCommand: true },
      durationSeconds: 95.2,
      outDir: '/out/6.12.first-boot',
    };
    expect(summaryLine({ ...booted, earlierAttempt: first })).toBe(
      'kernel 6.12 (6.12.118+deb13-amd64): booted in 9.0 s, command exited 0, 172.2 s in all ' +
        '(second boot: the first booted in 9.0 s, guest failed (virtme-run exit 255, command ' +
        'started, no exit status), 95.2 s in all, with no kernel failure on its console)',
    );
  });
});
