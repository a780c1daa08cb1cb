import { describe, expect, it } from '@jest/globals';
import { btfDefinesStruct } from '../../src/detect/btf-types.js';
import { syntheticBtf } from '../fixtures/capabilities/synthetic-btf.js';

describe('btfDefinesStruct', () => {
  it('finds a struct the blob defines, among others', () => {
    const blob = syntheticBtf(['sk_buff', 'nf_conn_help', 'nf_conn', 'sock']);
    expect(btfDefinesStruct(blob, 'nf_conn')).toBe(true);
    expect(btfDefinesStruct(blob, 'sk_buff')).toBe(true);
  });

  it('does not take a forward declaration, or a name that only starts the same, for a definition', () => {
    const blob = syntheticBtf(['sk_buff', 'nf_conn_help'], ['nf_conn']);
    expect(btfDefinesStruct(blob, 'nf_conn')).toBe(false);
    expect(btfDefinesStruct(blob, 'nf_con')).toBe(false);
  });

  it('says it cannot tell for bytes that are not BTF it reads', () => {
    expect(btfDefinesStruct(Buffer.alloc(0), 'nf_conn')).toBeUndefined();
    expect(btfDefinesStruct(Buffer.from('not a BTF blob, only text'), 'nf_conn')).toBeUndefined();
    const truncated = syntheticBtf(['nf_conn']).subarray(0, 30);
    expect(btfDefinesStruct(truncated, 'nf_conn')).toBeUndefined();
    const unknownKind = syntheticBtf(['sk_buff', 'nf_conn']);
    unknownKind.writeUInt32LE(31 << 24, 24 + 4);
    expect(btfDefinesStruct(unknownKind, 'nf_conn')).toBeUndefined();
  });
});
