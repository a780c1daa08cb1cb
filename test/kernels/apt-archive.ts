/**
 * Debian packages of another suite, fetched with `apt-get download` through an apt
 * configuration of their own, so the machine itself stays on its release: its sources, lists
 * and package cache are never touched.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { sourcesList, type Suite } from './catalogue.js';

/** Lists older than this are refreshed; a failed refresh with lists present only warns. */
const listsMaxAgeMs = 24 * 3600 * 1000;

export interface PackageFile {
  readonly name: string;
  readonly version: string;
  readonly path: string;
}

export class AptArchive {
  readonly #root: string;
  readonly #log: (line: string) => void;

  constructor(
    cacheDir: string,
    readonly suite: Suite,
    log: (line: string) => void,
  ) {
    this.#root = join(cacheDir, 'apt', suite);
    this.#log = log;
    mkdirSync(join(this.#root, 'lists', 'partial'), { recursive: true });
    mkdirSync(join(this.#root, 'cache', 'archives', 'partial'), { recursive: true });
    writeFileSync(join(this.#root, 'sources.list'), sourcesList(suite));
  }

  #options(): string[] {
    return [
      '-o',
      `Dir::Etc::SourceList=${join(this.#root, 'sources.list')}`,
      '-o',
      'Dir::Etc::SourceParts=/dev/null',
      '-o',
      `Dir::State::Lists=${join(this.#root, 'lists')}`,
      '-o',
      `Dir::Cache=${join(this.#root, 'cache')}`,
    ];
  }

  async #apt(tool: 'apt-get' | 'apt-cache', args: readonly string[], cwd?: string) {
    const result = await execa(tool, [...this.#options(), ...args], {
      reject: false,
      cwd,
      timeout: 600_000,
    });
    if (result.exitCode !== 0) {
      throw new Error(
        `${tool} ${args.join(' ')} (${this.suite}) exited with ${String(result.exitCode)}: ${result.stderr.trim()}`,
      );
    }
    return result.stdout;
  }

  /** Refreshes the suite's package lists when missing or older than a day. */
  async refresh(force = false): Promise<void> {
    const stamp = join(this.#root, 'lists', '.updated');
    const fresh = existsSync(stamp) && Date.now() - statSync(stamp).mtimeMs < listsMaxAgeMs;
    if (fresh && !force) return;
    try {
      this.#log(`apt: updating the ${this.suite} package lists`);
      await this.#apt('apt-get', ['update']);
      writeFileSync(stamp, '');
    } catch (error) {
      if (!existsSync(stamp)) throw error;
      this.#log(`apt: ${this.suite} lists not refreshed, using the old ones: ${String(error)}`);
    }
  }

  /** The package a metapackage depends on, e.g. the newest kernel image of the suite. */
  async dependencyOf(metapackage: string, pattern: RegExp): Promise<string> {
    const out = await this.#apt('apt-cache', ['depends', '--no-recommends', metapackage]);
    const names = [...out.matchAll(/^\s+Depends: (\S+)$/gm)].map((match) => match[1]!);
    const found = names.find((name) => pattern.test(name));
    if (found === undefined) {
      throw new Error(
        `${metapackage} (${this.suite}) depends on none matching ${String(pattern)}: ${names.join(', ')}`,
      );
    }
    return found;
  }

  /** Downloads a package unless the same version is cached already; returns its .deb. */
  async download(name: string): Promise<PackageFile> {
    const show = await this.#apt('apt-cache', ['show', '--no-all-versions', name]);
    const version = /^Version: (\S+)$/m.exec(show)?.[1];
    const arch = /^Architecture: (\S+)$/m.exec(show)?.[1];
    if (version === undefined || arch === undefined) {
      throw new Error(`apt-cache show ${name} (${this.suite}) gave no Version/Architecture`);
    }
    const debs = join(this.#root, '..', '..', 'debs');
    mkdirSync(debs, { recursive: true });
    const fileName = `${name}_${version.replace(':', '%3a')}_${arch}.deb`;
    const path = join(debs, fileName);
    if (!existsSync(path)) {
      // Download beside the final name, then rename: an interrupted run leaves no half file.
      const partial = join(debs, `.partial-${process.pid}`);
      rmSync(partial, { recursive: true, force: true });
      mkdirSync(partial);
      try {
        this.#log(`apt: downloading ${name} ${version} (${this.suite})`);
        await this.#apt('apt-get', ['download', `${name}=${version}`], partial);
        renameSync(join(partial, fileName), path);
      } finally {
        rmSync(partial, { recursive: true, force: true });
      }
    }
    return { name, version, path };
  }
}
