/** The machine's own packages the matrix needs, installed (from its own release) if missing. */
import { execa } from 'execa';

/** Debian package → why the matrix needs it. */
const needed: Readonly<Record<string, string>> = {
  'qemu-system-x86': 'qemu-system-x86_64, which runs the guests (software emulation)',
  'busybox-static': "virtme-run's initramfs, which mounts the shared root",
  kmod: 'depmod for the unpacked modules; modprobe in the guests',
  python3: 'virtme-run',
  'util-linux': 'setpriv --pdeathsig, findmnt',
};

async function installed(name: string): Promise<boolean> {
  const result = await execa('dpkg-query', ['-W', '-f=${Status}', name], { reject: false });
  return result.exitCode === 0 && result.stdout.includes('install ok installed');
}

export async function ensureHostTools(log: (line: string) => void): Promise<void> {
  const missing: string[] = [];
  for (const name of Object.keys(needed)) if (!(await installed(name))) missing.push(name);
  if (missing.length === 0) return;
  log(`host: installing ${missing.map((name) => `${name} (${needed[name]})`).join(', ')}`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = ['install', '-y', '-qq', '--no-install-recommends', ...missing];
  const first = await execa('apt-get', install, { reject: false, env });
  if (first.exitCode === 0) return;
  // Stale lists on a fresh machine are the usual cause; refresh once and retry.
  await execa('apt-get', ['update', '-qq'], { env });
  const second = await execa('apt-get', install, { reject: false, env });
  if (second.exitCode !== 0) {
    throw new Error(`apt-get install ${missing.join(' ')} failed: ${second.stderr.trim()}`);
  }
}
