import { existsSync, readFileSync } from 'node:fs';
import {
  INSTALLED_GENERATOR_DIR,
  RACE_GENERATORS,
} from '../../src/diagnose/reproduce/generators.js';
import { NEWER_BPFTRACE_VERSION } from '../kernels/newer-bpftrace.js';
import { readRepoFile, repoPath } from './support/repo-paths.js';
import { parseDocument } from './support/yaml.js';

/** One Dockerfile instruction: keyword and its arguments, continuation lines joined. */
interface Instruction {
  keyword: string;
  args: string;
}

function parseDockerfile(text: string): Instruction[] {
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(pending + line);
    pending = '';
  }
  if (pending !== '') logical.push(pending);
  return logical.map((line) => {
    const [keyword = '', ...rest] = line.split(/\s+/);
    return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
  });
}

interface Stage {
  name: string;
  base: string;
  instructions: Instruction[];
}

function stagesOf(instructions: Instruction[]): { args: Map<string, string>; stages: Stage[] } {
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (match === null) throw new Error(`unreadable FROM: ${instruction.args}`);
      const base = match[1]!.replace(/\$\{(\w+)\}/g, (_, name: string) => args.get(name) ?? '');
      stages.push({ name: match[2] ?? String(stages.length), base, instructions: [] });
    } else if (stages.length === 0 && instruction.keyword === 'ARG') {
      const [name, value = ''] = instruction.args.split('=', 2);
      args.set(name!, value);
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { args, stages };
}

const dockerfile = stagesOf(parseDockerfile(readRepoFile('Dockerfile')));
const packageJson = JSON.parse(readRepoFile('package.json')) as {
  version: string;
  scripts: Record<string, string>;
  bin: Record<string, string>;
};
const buildConfig = JSON.parse(readRepoFile('tsconfig.build.json')) as {
  compilerOptions: { outDir: string; rootDir: string };
};
function stage(name: string): Stage {
  const found = dockerfile.stages.find((candidate) => candidate.name === name);
  if (found === undefined) throw new Error(`the Dockerfile has no stage ${name}`);
  return found;
}
const dockerignore = readRepoFile('.dockerignore')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

function copies(stage: Stage): { from?: string; sources: string[]; destination: string }[] {
  return stage.instructions
    .filter((instruction) => instruction.keyword === 'COPY')
    .map((instruction) => {
      const words = instruction.args.split(/\s+/);
      const fromFlag = words.find((word) => word.startsWith('--from='));
      const paths = words.filter((word) => !word.startsWith('--'));
      return {
        from: fromFlag?.slice('--from='.length),
        sources: paths.slice(0, -1),
        destination: paths.at(-1)!,
      };
    });
}

/** Whether .dockerignore keeps a top-level path out of the build context. */
function ignored(path: string): boolean {
  return dockerignore.some(
    (pattern) =>
      pattern === path ||
      pattern === path.split('/')[0] ||
      (pattern.startsWith('*.') && path.endsWith(pattern.slice(1))),
  );
}

// Built and run for real by `scripts/image.sh test`; these checks need no engine at all.
describe('Dockerfile, statically', () => {
  it('builds in one stage, installs the system in another and runs a flattened copy of it', () => {
    expect(dockerfile.stages.map((s) => s.name)).toEqual([
      'build',
      'generators',
      'bpftrace',
      'system',
      'runtime',
    ]);
    expect(stage('runtime').base).toBe('scratch');
    // The whole system stage first, then the agent: what the system stage deleted stays out.
    expect(copies(stage('runtime'))[0]).toEqual({
      from: 'system',
      sources: ['/'],
      destination: '/',
    });
    const env = stage('runtime')
      .instructions.filter((i) => i.keyword === 'ENV')
      .map((i) => i.args);
    expect(env.some((e) => e.startsWith('PATH=') && e.includes('/usr/local/bin'))).toBe(true);
  });

  it('pins every base image by exact version tag and digest, and never to latest', () => {
    const pulled = dockerfile.stages.filter((s) => s.base !== 'scratch');
    expect(pulled.map((s) => s.name)).toEqual(['build', 'generators', 'bpftrace', 'system']);
    for (const { base } of pulled) {
      expect(base).toMatch(/^node:20\.\d+\.\d+-bookworm-slim@sha256:[0-9a-f]{64}$/);
      expect(base).not.toContain('latest');
    }
  });

  it('gets a build CA as a secret mount only: in no layer and no configuration', () => {
    const install = stage('build').instructions.find((i) => /npm ci\b/.test(i.args));
    expect(install?.args).toContain('--mount=type=secret,id=build-ca');
    const all = dockerfile.stages.flatMap((s) => s.instructions);
    for (const instruction of all.filter((i) => ['ENV', 'ARG', 'COPY', 'ADD'].includes(i.keyword)))
      expect(instruction.args).not.toMatch(/NODE_EXTRA_CA_CERTS|ca-certificates\.crt|build-ca/);
  });

  it('copies from the build context only files that exist and .dockerignore lets through', () => {
    for (const stage of dockerfile.stages) {
      for (const copy of copies(stage).filter((c) => c.from === undefined)) {
        for (const source of copy.sources) {
          expect({
            source,
            exists: existsSync(repoPath(source)),
            ignored: ignored(source),
          }).toEqual({
            source,
            exists: true,
            ignored: false,
          });
        }
      }
    }
  });

  it('copies from the build stage only what that stage produced', () => {
    const build = stage('build');
    const produced = [
      ...copies(build).flatMap((copy) =>
        copy.destination.endsWith('/')
          ? copy.sources.map((source) => `/app/${source}`)
          : [`/app/${copy.destination.replace(/^\.\//, '')}`],
      ),
      `/app/${buildConfig.compilerOptions.outDir}`,
      '/app/node_modules',
    ];
    const fromStages = copies(stage('runtime')).filter((copy) => copy.from !== undefined);
    expect(fromStages.map((copy) => copy.from)).toEqual([
      'system',
      'build',
      'build',
      'build',
      'generators',
    ]);
    for (const copy of fromStages.filter((c) => c.from === 'build')) {
      for (const source of copy.sources) {
        expect(produced.some((path) => source === path || source.startsWith(`${path}/`))).toBe(
          true,
        );
      }
    }
  });

  it('runs only npm scripts that package.json defines, and builds with the build script', () => {
    const runs = dockerfile.stages.flatMap((stage) =>
      stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args),
    );
    const scripts = runs.flatMap((run) => [...run.matchAll(/npm run (\S+)/g)].map((m) => m[1]!));
    expect(scripts).toContain('build');
    for (const script of scripts) expect(Object.keys(packageJson.scripts)).toContain(script);
    expect(packageJson.scripts['build']).toContain('tsconfig.build.json');
    expect(runs.some((run) => /npm ci --ignore-scripts\b/.test(run))).toBe(true);
    expect(runs.some((run) => /npm prune --omit=dev/.test(run))).toBe(true);
  });

  it('skips install scripts safely: only dev dependencies have any', () => {
    const lock = JSON.parse(readRepoFile('package-lock.json')) as {
      packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }>;
    };
    const runtimeWithScripts = Object.entries(lock.packages)
      .filter(([, entry]) => entry.hasInstallScript === true && entry.dev !== true)
      .map(([name]) => name);
    expect(runtimeWithScripts).toEqual([]);
  });

  it("starts the agent from package.json's bin, compiled to tsconfig.build.json's outDir", () => {
    const runtime = stage('runtime');
    const entrypoint = runtime.instructions.filter((i) => i.keyword === 'ENTRYPOINT');
    expect(entrypoint).toHaveLength(1);
    const command = JSON.parse(entrypoint[0]!.args) as string[];
    const bin = packageJson.bin['conntrack-race-observer'];
    expect(bin).toBe(`${buildConfig.compilerOptions.outDir}/main.js`);
    expect(command).toEqual(['node', `/app/${bin}`]);
    expect(existsSync(repoPath(buildConfig.compilerOptions.rootDir, 'main.ts'))).toBe(true);
  });

  it("installs Debian's iproute2, conntrack and util-linux without recommends, and no bookworm bpftrace", () => {
    const install = stage('system').instructions.find((i) => /apt-get install/.test(i.args));
    expect(install?.args).toContain('--no-install-recommends');
    for (const pkg of ['iproute2=', 'conntrack=', 'util-linux', 'ca-certificates']) {
      expect(install?.args).toContain(pkg);
    }
    expect(install?.args).not.toMatch(/\bbpftrace\b/);
    expect(install?.args).toContain('rm -rf /var/lib/apt/lists/*');
  });

  it("bundles the bpftrace the tests run beside the machine's own: the same script, the same version", () => {
    const bundle = stage('bpftrace');
    const version = bundle.instructions.find(
      (i) => i.keyword === 'ARG' && i.args.startsWith('BPFTRACE_VERSION='),
    );
    expect(version?.args).toBe(`BPFTRACE_VERSION=${NEWER_BPFTRACE_VERSION}`);
    expect(copies(bundle)).toEqual([
      { from: undefined, sources: ['scripts/bundle-bpftrace.sh'], destination: '/usr/local/bin/' },
    ]);
    const run = bundle.instructions.find((i) => i.keyword === 'RUN');
    expect(run?.args).toBe('bundle-bpftrace.sh /opt/bpftrace "$BPFTRACE_VERSION"');
    // On PATH in the system stage, which the runtime image is a copy of.
    const system = stage('system');
    expect(copies(system)).toContainEqual({
      from: 'bpftrace',
      sources: ['/opt/bpftrace'],
      destination: '/opt/bpftrace',
    });
    expect(system.instructions.map((i) => i.args)).toContain(
      'ln -s /opt/bpftrace/bin/bpftrace /usr/local/bin/bpftrace',
    );
  });

  it('labels the image with OCI annotations and the package version', () => {
    const runtime = stage('runtime');
    const labels = runtime.instructions
      .filter((i) => i.keyword === 'LABEL')
      .map((i) => i.args)
      .join(' ');
    for (const key of [
      'title',
      'description',
      'version',
      'revision',
      'created',
      'licenses',
      'base.name',
    ]) {
      expect(labels).toContain(`org.opencontainers.image.${key}=`);
    }
    const versionArg = runtime.instructions.find(
      (i) => i.keyword === 'ARG' && i.args.startsWith('VERSION='),
    );
    expect(versionArg?.args).toBe(`VERSION=${packageJson.version}`);
  });

  it('ships the probes directory the DaemonSet points --probes-dir at', () => {
    const runtime = stage('runtime');
    expect(copies(runtime)).toContainEqual({
      from: undefined,
      sources: ['probes'],
      destination: './probes',
    });
    const daemonSet = readFileSync(repoPath('deploy', 'base', 'daemonset.yaml'), 'utf8');
    expect(daemonSet).toMatch(/- --probes-dir\n\s+- \/app\/probes/);
    expect(parseDocument(daemonSet)).toBeDefined();
  });

  it('compiles every race generator of doctor --reproduce in its own stage and ships them where the doctor looks', () => {
    const generators = stage('generators');
    const install = generators.instructions.find((i) => /apt-get install/.test(i.args));
    expect(install?.args).toMatch(/--no-install-recommends gcc=\S+ libc6-dev/);
    expect(copies(generators)).toContainEqual({
      from: undefined,
      sources: ['generators'],
      destination: './generators',
    });
    const compile = generators.instructions.find((i) => /\bgcc -O2\b/.test(i.args));
    for (const name of RACE_GENERATORS) {
      expect(compile?.args).toContain(name);
      expect(existsSync(repoPath('generators', `${name}.c`))).toBe(true);
    }
    expect(compile?.args).toContain('"/out/$generator" "generators/$generator.c"');
    expect(copies(stage('runtime'))).toContainEqual({
      from: 'generators',
      sources: ['/out/'],
      destination: `${INSTALLED_GENERATOR_DIR}/`,
    });
    // The compiler is a build tool: nothing of the generators stage but /out reaches the image.
    const system = stage('system').instructions.find((i) => /apt-get install/.test(i.args));
    expect(system?.args).not.toMatch(/\bgcc\b/);
  });
});
