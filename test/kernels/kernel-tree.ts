/**
 * A kernel unpacked for booting: its image, its modules (with the dependency files Debian's
 * packages leave to `depmod`) and, for some kernels, its headers, in one directory tree that
 * the guest sees under the same path through the shared root.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { AptArchive, PackageFile } from './apt-archive.js';
import type { KernelSpec } from './catalogue.js';

export interface KernelTree {
  readonly spec: KernelSpec;
  /** The kernel release, as `uname -r` prints it in the guest. */
  readonly release: string;
  readonly root: string;
  readonly image: string;
  readonly packages: readonly PackageFile[];
}

export async function unpackKernel(
  spec: KernelSpec,
  archive: AptArchive,
  cacheDir: string,
  log: (line: string) => void,
): Promise<KernelTree> {
  const imageName =
    'name' in spec.image
      ? spec.image.name
      : await archive.dependencyOf(spec.image.metapackage, spec.imagePattern);
  if (!spec.imagePattern.test(imageName)) {
    throw new Error(`${imageName} does not match ${String(spec.imagePattern)}`);
  }
  const packages: PackageFile[] = [];
  for (const name of [imageName, ...spec.extraPackages])
    packages.push(await archive.download(name));
  const image = packages[0]!;
  const root = join(cacheDir, 'trees', `${spec.id}_${image.version}`);
  const stamp = join(root, '.unpacked');
  if (!existsSync(stamp)) {
    const partial = `${root}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    try {
      for (const pkg of packages) {
        log(`kernel ${spec.id}: unpacking ${pkg.name} ${pkg.version}`);
        await execa('dpkg-deb', ['-x', pkg.path, partial]);
      }
      // Merged-/usr packages (trixie) put modules under usr/lib only; virtme and depmod look
      // in lib/modules.
      if (!existsSync(join(partial, 'lib'))) symlinkSync('usr/lib', join(partial, 'lib'));
      const release = releaseOf(partial);
      // The packages leave modules.dep to the postinst; without it modprobe finds nothing.
      await execa('depmod', ['-a', '-b', partial, release]);
      writeFileSync(join(partial, '.unpacked'), `${packages.map((p) => p.path).join('\n')}\n`);
      rmSync(root, { recursive: true, force: true });
      renameSync(partial, root);
    } catch (error) {
      rmSync(partial, { recursive: true, force: true });
      throw error;
    }
  }
  const release = releaseOf(root);
  return { spec, release, root, image: join(root, 'boot', `vmlinuz-${release}`), packages };
}

function releaseOf(root: string): string {
  const releases = readdirSync(join(root, 'lib', 'modules'));
  if (releases.length !== 1) {
    throw new Error(`${root}/lib/modules holds ${releases.length} releases, expected one`);
  }
  return releases[0]!;
}
