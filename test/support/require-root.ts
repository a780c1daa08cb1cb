// Runs before every kernel test file: these tests need root, bpftrace and a mounted tracefs.
// Without them they must fail loudly, never pass by doing nothing.
import { accessSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

if (process.getuid?.() !== 0) {
  throw new Error(
    'kernel tests need root (network namespaces, iptables, bpftrace): run them as root',
  );
}
try {
  execFileSync('bpftrace', ['--version'], { stdio: 'ignore' });
} catch {
  throw new Error('kernel tests need bpftrace: run scripts/install-system-deps.sh');
}
accessSync('/sys/kernel/tracing/events/skb/kfree_skb/format');
