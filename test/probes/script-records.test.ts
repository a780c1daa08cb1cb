import { readFileSync } from 'node:fs';
import { recordFieldCount } from '../../src/decode/decode.js';
import { probeCatalogue } from '../../src/probes/catalogue.js';
import { probesDir } from '../lab/bpftrace.js';

// Every script variant the catalogue declares, read as text: each record it prints must be one
// its probe declares (`emits`, or `map_cleared`), at a schema version the decoder reads and with
// the field count the decoder expects; each map it prints must be one the catalogue routes to
// it (`maps`), and each declared map must be printed. The kernel tests check real output of the
// scripts that run here; this holds every variant (kprobe ones, older kernels' ones) to the
// decoder, so a script and the decoder cannot drift apart unseen.

const withoutComments = (text: string): string =>
  text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');

/** The format strings of every printf of a script. */
function printfFormats(code: string): string[] {
  return [...code.matchAll(/printf\(\s*"((?:[^"\\]|\\.)*)"/g)].map((match) =>
    (match[1] ?? '').replace(/\\n$/, ''),
  );
}

const variants = probeCatalogue.flatMap((spec) =>
  spec.variants.map((variant) => ({ spec, script: variant.script })),
);

describe.each(variants)('$script', ({ spec, script }) => {
  const code = withoutComments(readFileSync(`${probesDir}${script}`, 'utf8'));

  it('prints only records its probe declares, at a schema the decoder reads, with the fields it expects', () => {
    const formats = printfFormats(code);
    for (const format of formats) {
      const fields = format.split(' ');
      const [record = '', schema = ''] = fields;
      expect({
        format,
        declared: [...spec.emits, 'map_cleared'].includes(record as never),
      }).toEqual({
        format,
        declared: true,
      });
      expect({ format, fields: fields.length }).toEqual({
        format,
        fields: recordFieldCount(record, schema),
      });
    }
  });

  it('prints exactly the maps the catalogue routes to its probe', () => {
    const printed = new Set(
      [...code.matchAll(/print\((@[A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]),
    );
    expect([...printed].sort()).toEqual([...(spec.maps ?? [])].sort());
  });
});
