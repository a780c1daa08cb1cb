import { CombineError, combineScripts } from '../../../src/sources/bpftrace/combined-program.js';
import { probeCatalogue } from '../../../src/probes/catalogue.js';
import { modeScripts } from './combined-program.fixture.js';

const PROBE_HEADER = /^(?:tracepoint|kprobe|kretprobe|interval):[^\s/{]+/gm;
const MAP = /@[A-Za-z_][A-Za-z0-9_]*/g;

const withoutComments = (text: string): string =>
  text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');

/** The map names used by each probe's sections of a combined program, END block left out. */
function mapsBySection(program: string): Map<string, Set<string>> {
  const sections = new Map<string, Set<string>>();
  const body = program.slice(0, program.search(/^END\n\{/m) >>> 0 || undefined);
  for (const part of body.split(/^\/\* ==== probe /m).slice(1)) {
    const name = part.slice(0, part.indexOf(' '));
    const maps = sections.get(name) ?? new Set<string>();
    for (const map of withoutComments(part).match(MAP) ?? []) maps.add(map);
    sections.set(name, maps);
  }
  return sections;
}

describe('the combined program of a mode', () => {
  for (const mode of ['tracepoint', 'kprobe'] as const) {
    for (const variant of [0, 1, 2]) {
      it(`${mode} mode, variant ${variant} of each probe: every script's probes are in it, its positional arguments substituted, no map shared`, async () => {
        const scripts = await modeScripts(mode, () => variant);
        const program = combineScripts(scripts);
        const code = withoutComments(program);
        for (const script of scripts) {
          for (const header of withoutComments(script.source).match(PROBE_HEADER) ?? []) {
            expect(code).toContain(header);
          }
          expect(program).toContain(`/* ==== probe ${script.name} ==== */`);
        }
        expect(code).not.toMatch(/\$\d/);
        for (const script of scripts) {
          if (script.args.length > 0) expect(code).toContain(`== ${script.args[0] ?? ''}`);
        }
        expect(code.match(/^END\b/gm)).toHaveLength(1);
        expect(code.match(/^BEGIN\b/gm)).toBeNull();
        const sections = [...mapsBySection(program)];
        expect(sections.map(([name]) => name).sort()).toEqual(
          scripts.map((script) => script.name).sort(),
        );
        // One block per attach point: bpftrace loads one BPF program per block.
        const headers = code.match(PROBE_HEADER) ?? [];
        expect(headers).toEqual([...new Set(headers)]);
        for (const [i, [name, maps]] of sections.entries()) {
          for (const [other, otherMaps] of sections.slice(i + 1)) {
            const shared = [...maps].filter((map) => otherMaps.has(map));
            expect({ name, other, shared }).toEqual({ name, other, shared: [] });
          }
        }
      });
    }
  }

  it('keeps the maps a probe prints under their names, where its output is routed by them', async () => {
    const program = combineScripts(await modeScripts('kprobe'));
    for (const map of ['@dns_drop_totals', '@dns_drops_0', '@dns_drops_1']) {
      expect(program).toContain(`print(${map})`);
    }
  });

  it('declares the printed maps of each mode once, each used by its own scripts', async () => {
    for (const mode of ['tracepoint', 'kprobe'] as const) {
      const owners = probeCatalogue
        .filter((probe) => probe.runsIn.includes(mode))
        .flatMap((probe) => probe.maps ?? []);
      expect(new Set(owners).size).toBe(owners.length);
    }
    for (const mode of ['tracepoint', 'kprobe'] as const) {
      for (const script of await modeScripts(mode)) {
        for (const map of script.maps) expect(script.source).toContain(map);
      }
    }
  });

  it('merges END blocks into one and renames a private map two scripts both use', () => {
    const program = combineScripts([
      {
        name: 'a',
        source: 'kprobe:f { @m[tid] = 1; }\nEND\n{\n  clear(@m);\n}\n',
        args: [],
        maps: [],
      },
      {
        name: 'b',
        source: 'kprobe:g { @m[tid] = $1; }\nEND { clear(@m); }',
        args: ['42'],
        maps: [],
      },
    ]);
    expect(program).toMatch(/kprobe:g\s*\{ @m__1\[tid\] = 42; \}/);
    expect(program.match(/^END/gm)).toHaveLength(1);
    const end = program.slice(program.search(/^END$/m));
    expect(end.indexOf('clear(@m);')).toBeLessThan(end.indexOf('clear(@m__1);'));
    expect(end.trimEnd().endsWith('}')).toBe(true);
  });

  it('joins the blocks of several scripts on one attach point into one, each predicate an if around its body', () => {
    const program = combineScripts([
      {
        name: 'a',
        source:
          'tracepoint:x:y\n/args->p == $1/\n{ $v = 1; @a = count(); }\ninterval:s:1 { print(@a); }',
        args: ['7'],
        maps: ['@a'],
      },
      {
        name: 'b',
        source:
          'tracepoint:x:y /args->q/ { $v = (uint8)2; @b[$v] = count(); }\n' +
          'kprobe:k { @c = 1; }\ninterval:s:1 { print(@b); }',
        args: [],
        maps: ['@b'],
      },
    ]);
    const code = withoutComments(program);
    expect(code.match(/^tracepoint:x:y$/gm)).toHaveLength(1);
    expect(code.match(/^interval:s:1$/gm)).toHaveLength(1);
    expect(code).toMatch(
      /^tracepoint:x:y\n\{\n\nif \(args->p == 7\) \{ \$v = 1; @a = count\(\); \}\n\nif \(args->q\) \{ \$v__1 = \(uint8\)2; @b\[\$v__1\] = count\(\); \}\n\}$/m,
    );
    expect(code.indexOf('print(@a)')).toBeLessThan(code.indexOf('print(@b)'));
    expect(code).toMatch(/^kprobe:k\n\{ @c = 1; \}$/m);
  });

  it('refuses a printed map another probe uses, and a missing or non-integer positional argument', () => {
    const refusal = (scripts: Parameters<typeof combineScripts>[0]): string | undefined => {
      try {
        combineScripts(scripts);
        return undefined;
      } catch (error) {
        return error instanceof CombineError ? error.code : String(error);
      }
    };
    expect(
      refusal([
        { name: 'a', source: 'interval:s:1 { print(@n); }', args: [], maps: ['@n'] },
        { name: 'b', source: 'kprobe:g { @n = 1; }', args: [], maps: [] },
      ]),
    ).toBe('map_clash');
    expect(refusal([{ name: 'a', source: 'kprobe:g /$2/ { }', args: ['1'], maps: [] }])).toBe(
      'missing_positional',
    );
    expect(refusal([{ name: 'a', source: 'kprobe:g /$1/ { }', args: ['x'], maps: [] }])).toBe(
      'not_integer_positional',
    );
  });
});
