/**
 * Reads the type section of a BTF blob (`/sys/kernel/btf/vmlinux`) far enough to say whether it
 * defines a struct of a given name. bpftrace reads kernel structs from that blob: a struct the
 * blob defines needs neither module BTF nor kernel headers, whichever module it belongs to
 * (Debian's 5.10 vmlinux BTF defines `struct nf_conn`, built-in code includes its header).
 *
 * Layout (include/uapi/linux/btf.h): a header (magic 0xeB9F, version, flags, hdr_len, then
 * type_off/type_len/str_off/str_len relative to its end), the types one after another, each a
 * 12-byte `struct btf_type` followed by data whose size its kind and vlen give, and a string
 * table the types name into.
 */

const BTF_MAGIC = 0xeb9f;
const KIND_STRUCT = 4;

/** Bytes that follow `struct btf_type`, per kind: fixed, and per member (vlen). */
const TRAILING: Readonly<Record<number, { fixed: number; perMember: number }>> = {
  1: { fixed: 4, perMember: 0 }, // INT
  2: { fixed: 0, perMember: 0 }, // PTR
  3: { fixed: 12, perMember: 0 }, // ARRAY
  4: { fixed: 0, perMember: 12 }, // STRUCT
  5: { fixed: 0, perMember: 12 }, // UNION
  6: { fixed: 0, perMember: 8 }, // ENUM
  7: { fixed: 0, perMember: 0 }, // FWD: a declaration only, which bpftrace cannot read through
  8: { fixed: 0, perMember: 0 }, // TYPEDEF
  9: { fixed: 0, perMember: 0 }, // VOLATILE
  10: { fixed: 0, perMember: 0 }, // CONST
  11: { fixed: 0, perMember: 0 }, // RESTRICT
  12: { fixed: 0, perMember: 0 }, // FUNC
  13: { fixed: 0, perMember: 8 }, // FUNC_PROTO
  14: { fixed: 4, perMember: 0 }, // VAR
  15: { fixed: 0, perMember: 12 }, // DATASEC
  16: { fixed: 0, perMember: 0 }, // FLOAT
  17: { fixed: 4, perMember: 0 }, // DECL_TAG
  18: { fixed: 0, perMember: 0 }, // TYPE_TAG
  19: { fixed: 0, perMember: 12 }, // ENUM64
};

/**
 * True when the blob defines `struct <name>`, false when it does not, undefined when the bytes
 * are not BTF this reader understands (then the caller falls back to what else it knows).
 */
export function btfDefinesStruct(blob: Buffer, name: string): boolean | undefined {
  if (blob.length < 24) return undefined;
  const littleEndian = blob.readUInt16LE(0) === BTF_MAGIC;
  if (!littleEndian && blob.readUInt16BE(0) !== BTF_MAGIC) return undefined;
  const u32 = (offset: number): number =>
    littleEndian ? blob.readUInt32LE(offset) : blob.readUInt32BE(offset);
  const headerLength = u32(4);
  const typesStart = headerLength + u32(8);
  const typesEnd = typesStart + u32(12);
  const stringsStart = headerLength + u32(16);
  const stringsEnd = stringsStart + u32(20);
  if (typesEnd > blob.length || stringsEnd > blob.length) return undefined;
  const wanted = Buffer.from(`${name}\0`);
  const namedWanted = (nameOffset: number): boolean => {
    const at = stringsStart + nameOffset;
    return (
      at + wanted.length <= stringsEnd &&
      blob.compare(wanted, 0, wanted.length, at, at + wanted.length) === 0
    );
  };
  for (let offset = typesStart; offset < typesEnd;) {
    if (offset + 12 > typesEnd) return undefined;
    const info = u32(offset + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const trailing = TRAILING[kind];
    if (trailing === undefined) return undefined;
    if (kind === KIND_STRUCT && namedWanted(u32(offset))) return true;
    offset += 12 + trailing.fixed + trailing.perMember * vlen;
  }
  return false;
}
