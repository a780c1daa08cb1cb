/**
 * virtme-ng, the tool that boots a kernel with the machine's own root file system shared
 * read-only, taken from its Debian package (pure Python: it runs from the unpacked tree).
 *
 * Its guest init expects udev to name the virtio serial ports (`/dev/virtio-ports/virtme.*`);
 * where no udev is installed it powers the guest off before running the script. The unpacked
 * copy is patched to make those links from sysfs, and to wait for its overlay mounts before it
 * relies on them (it starts them in the background).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { AptArchive } from './apt-archive.js';

export interface Virtme {
  readonly version: string;
  /** What to put on PYTHONPATH. */
  readonly pythonPath: string;
  readonly run: string;
}

const overlayLoopEnd = '        mount -t overlay -o "${mnt_opts}" "${tag}" "${dir}" &\ndone\n';
const beforeFdLinks = '# Install /proc/self/fd symlinks into /dev if not already present\n';
const virtioPortLinks = [
  '# Added for machines without udev: name the virtio serial ports from sysfs.',
  'if [[ ! -e /dev/virtio-ports ]]; then',
  '    mkdir -p /dev/virtio-ports',
  '    for port in /sys/class/virtio-ports/*; do',
  '        [[ -r $port/name ]] && ln -s "../${port##*/}" "/dev/virtio-ports/$(<"$port/name")"',
  '    done',
  'fi',
  '',
].join('\n');

export function patchVirtmeInit(text: string): string {
  for (const anchor of [overlayLoopEnd, beforeFdLinks]) {
    if (!text.includes(anchor)) {
      throw new Error(`virtme-init changed: cannot find ${JSON.stringify(anchor)} to patch`);
    }
  }
  return text
    .replace(overlayLoopEnd, `${overlayLoopEnd}wait\n`)
    .replace(beforeFdLinks, `${virtioPortLinks}${beforeFdLinks}`);
}

export async function unpackVirtme(
  archive: AptArchive,
  cacheDir: string,
  log: (line: string) => void,
): Promise<Virtme> {
  const pkg = await archive.download('virtme-ng');
  const root = join(cacheDir, 'virtme', pkg.version);
  const pythonPath = join(root, 'usr', 'lib', 'python3', 'dist-packages');
  if (!existsSync(join(root, '.unpacked'))) {
    const partial = `${root}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    try {
      log(`virtme-ng: unpacking ${pkg.version}`);
      await execa('dpkg-deb', ['-x', pkg.path, partial]);
      const init = join(
        partial,
        'usr',
        'lib',
        'python3',
        'dist-packages',
        'virtme',
        'guest',
        'virtme-init',
      );
      writeFileSync(init, patchVirtmeInit(readFileSync(init, 'utf8')));
      writeFileSync(join(partial, '.unpacked'), `${pkg.path}\n`);
      rmSync(root, { recursive: true, force: true });
      renameSync(partial, root);
    } catch (error) {
      rmSync(partial, { recursive: true, force: true });
      throw error;
    }
  }
  return { version: pkg.version, pythonPath, run: join(root, 'usr', 'bin', 'virtme-run') };
}
