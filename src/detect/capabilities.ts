import { gunzipSync } from 'node:zlib';
import { btfDefinesStruct } from './btf-types.js';
import { type BpftraceInfo, bpftraceInfoFlag, parseBpftraceInfo } from './bpftrace-info.js';
import { type KernelVersion, parseKernelRelease } from './kernel-release.js';
import { dropReasonsOfFormat, type DropReasonResult } from './drop-reasons.js';
import { type KprobeTarget, kprobeAttachTargets } from '../probes/catalogue.js';

/** File reads under the roots of `CapabilityPaths`; never throws. */
export interface CapabilityFiles {
  /** The file's bytes, or undefined when it does not exist or cannot be read. */
  read(path: string): Promise<Buffer | undefined>;
  /** Whether the path exists (file or directory). */
  exists(path: string): Promise<boolean>;
}

export interface CommandOutcome {
  /** Undefined when the process was killed or never started. */
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  /** Why the command could not be started at all (e.g. not installed); else undefined. */
  readonly startError: string | undefined;
  readonly durationMs: number;
}

/** Runs a command to completion; never throws, whatever the command does. */
export type CommandRunner = (
  file: string,
  args: readonly string[],
  options: {
    readonly timeoutMs: number;
    /** Output past this many bytes ends the command (it then fails); execa's default else. */
    readonly maxBufferBytes?: number;
  },
) => Promise<CommandOutcome>;

export interface CapabilityPaths {
  readonly procRoot: string;
  readonly sysRoot: string;
  /** Tried in order; the first one holding `events/` is the mounted tracefs. */
  readonly tracefsRoots: readonly string[];
  readonly bootRoot: string;
  /** Where kernel headers are looked for: `<modulesRoot>/<release>/build`, … */
  readonly modulesRoot: string;
  /** … else `<usrSrcRoot>/linux-headers-<release>`. */
  readonly usrSrcRoot: string;
}

export const defaultCapabilityPaths: CapabilityPaths = {
  procRoot: '/proc',
  sysRoot: '/sys',
  tracefsRoots: ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'],
  bootRoot: '/boot',
  modulesRoot: '/lib/modules',
  usrSrcRoot: '/usr/src',
};

export type AttachOutcome =
  | {
      readonly attached: true;
      readonly probes: readonly string[];
      readonly durationMs: number;
    }
  | {
      readonly attached: false;
      readonly probes: readonly string[];
      /** False when no attach was tried (e.g. bpftrace itself reports no kprobe support). */
      readonly attempted: boolean;
      readonly durationMs: number;
      /** bpftrace's own words, without its start-up noise. */
      readonly error: string;
    };

export type BpftraceCapability =
  | {
      readonly available: true;
      readonly path: string;
      readonly version: string | undefined;
      /** `Probe types` of `--info`; undefined when this bpftrace does not list the type. */
      readonly kprobe: boolean | undefined;
      readonly tracepoint: boolean | undefined;
      readonly kfunc: boolean | undefined;
      /** `Kernel features: btf`: bpftrace can read kernel types from BTF. */
      readonly btf: boolean | undefined;
      readonly info: BpftraceInfo;
    }
  | { readonly available: false; readonly path: string; readonly error: string };

export interface TracefsCapability {
  /** The mounted tracefs, or undefined when none of the roots is mounted. */
  readonly root: string | undefined;
  /** The roots looked at, in order (CapabilityPaths.tracefsRoots). */
  readonly searched: readonly string[];
  /** `events/skb/kfree_skb/format` could be read. */
  readonly kfreeSkbFormat: boolean;
  /**
   * The fields of `skb:kfree_skb` its format file lists, without the `common_` ones: e.g.
   * `skbaddr, location, protocol` on 5.10, `+ reason` from 5.17 (and 5.15 stable with the
   * backport), `+ rx_sk` from 6.11. Empty when the format could not be read.
   */
  readonly kfreeSkbFields: readonly string[];
  /** The kfree_skb tracepoint has a `reason` field (5.17; backported to 5.15 stable). */
  readonly kfreeSkbReason: boolean;
  /** Its `__print_symbolic` names NETFILTER_DROP. */
  readonly netfilterDropReason: boolean;
  /** Every drop-reason name its `__print_symbolic` table holds; empty before 5.17. */
  readonly dropReasonNames: readonly string[];
  /**
   * The drop-reason table parsed from that same read of the format file (the probes' arguments
   * and the decoder's names), or why there is none.
   */
  readonly dropReasons: DropReasonResult;
  /** `kprobe_events` exists: the kernel was built with kprobe events. */
  readonly kprobeEvents: boolean;
}

export interface KernelConfigCapability {
  /** Where the kernel configuration was read from. */
  readonly source: string;
  /** CONFIG_KPROBES: true when `=y`, false when "is not set", undefined when absent. */
  readonly kprobes: boolean | undefined;
  /** CONFIG_NF_CONNTRACK: `y` (its types are in vmlinux), `m` (a module), or undefined. */
  readonly nfConntrack: 'y' | 'm' | undefined;
  /** CONFIG_DEBUG_INFO_BTF_MODULES=y: each loaded module exports its own BTF (5.11+). */
  readonly btfModules: boolean | undefined;
}

/** Kernel headers of the running release, as bpftrace's BPFTRACE_KERNEL_SOURCE/BUILD take them. */
export interface KernelHeaders {
  readonly source: string;
  readonly build: string;
}

export interface KernelCapabilities {
  readonly kernelRelease: string | undefined;
  readonly kernelVersion: KernelVersion | undefined;
  /** `/sys/kernel/btf/vmlinux` exists (CONFIG_DEBUG_INFO_BTF). */
  readonly btf: boolean;
  /** The path of the vmlinux BTF (whether or not it exists), for BPFTRACE_BTF. */
  readonly vmlinuxBtfPath: string;
  /**
   * `/sys/kernel/btf/nf_conntrack` exists: the loaded nf_conntrack module exports its types
   * (`struct nf_conn`). Kernels before 5.11 export no module BTF.
   */
  readonly nfConntrackBtf: boolean;
  /**
   * Whether the vmlinux BTF defines `struct nf_conn` (it does where built-in code includes its
   * header, e.g. Debian's 5.10, though nf_conntrack is a module); undefined when unreadable.
   */
  readonly nfConnInVmlinuxBtf: boolean | undefined;
  /** Kernel headers for this release, when installed (or mounted from the host). */
  readonly kernelHeaders: KernelHeaders | undefined;
  readonly kernelConfig: KernelConfigCapability | undefined;
  readonly bpftrace: BpftraceCapability;
  readonly tracefs: TracefsCapability;
  /** Header of `/proc/net/stat/nf_conntrack`; undefined when conntrack is not loaded. */
  readonly conntrackStatColumns: readonly string[] | undefined;
  readonly kprobeAttach: Readonly<Record<KprobeTarget, AttachOutcome>>;
}

export interface DetectCapabilitiesOptions {
  readonly files: CapabilityFiles;
  readonly run: CommandRunner;
  readonly bpftracePath: string;
  readonly paths?: CapabilityPaths;
  /** Upper bound of one test-attach; it takes well under a second either way. */
  readonly attachTimeoutMs?: number;
  readonly infoTimeoutMs?: number;
}

// Only bounds a hang: both take well under a second on a node, but the first bpftrace start
// on a cold machine loads LLVM from disk, and `--info` took over 10 s in a freshly booted 6.1
// under software emulation.
const DEFAULT_ATTACH_TIMEOUT_MS = 60_000;
const DEFAULT_INFO_TIMEOUT_MS = 60_000;

async function readText(files: CapabilityFiles, path: string): Promise<string | undefined> {
  const bytes = await files.read(path);
  return bytes?.toString('utf8');
}

async function detectKernelRelease(
  files: CapabilityFiles,
  paths: CapabilityPaths,
): Promise<string | undefined> {
  const text = await readText(files, `${paths.procRoot}/sys/kernel/osrelease`);
  const release = text?.trim();
  return release === undefined || release === '' ? undefined : release;
}

function booleanSetting(config: string, name: string): boolean | undefined {
  if (new RegExp(`^${name}=y\\s*$`, 'm').test(config)) return true;
  if (new RegExp(`^# ${name} is not set\\s*$`, 'm').test(config)) return false;
  return undefined;
}

function tristateSetting(config: string, name: string): 'y' | 'm' | undefined {
  const match = new RegExp(`^${name}=([ym])\\s*$`, 'm').exec(config);
  return match?.[1] === 'y' ? 'y' : match?.[1] === 'm' ? 'm' : undefined;
}

function configCapability(source: string, config: string): KernelConfigCapability {
  return {
    source,
    kprobes: booleanSetting(config, 'CONFIG_KPROBES'),
    nfConntrack: tristateSetting(config, 'CONFIG_NF_CONNTRACK'),
    btfModules: booleanSetting(config, 'CONFIG_DEBUG_INFO_BTF_MODULES'),
  };
}

async function detectKernelConfig(
  files: CapabilityFiles,
  paths: CapabilityPaths,
  release: string | undefined,
): Promise<KernelConfigCapability | undefined> {
  const gzPath = `${paths.procRoot}/config.gz`;
  const gz = await files.read(gzPath);
  if (gz !== undefined) {
    try {
      return configCapability(gzPath, gunzipSync(gz).toString('utf8'));
    } catch {
      // A truncated or unreadable config.gz says nothing; fall through to /boot.
    }
  }
  if (release === undefined) return undefined;
  const bootPath = `${paths.bootRoot}/config-${release}`;
  const text = await readText(files, bootPath);
  return text === undefined ? undefined : configCapability(bootPath, text);
}

async function detectTracefs(
  files: CapabilityFiles,
  paths: CapabilityPaths,
): Promise<TracefsCapability> {
  for (const root of paths.tracefsRoots) {
    if (!(await files.exists(`${root}/events`))) continue;
    // Read and parsed once here: mode selection and the probes' drop-reason codes both use it.
    const path = `${root}/events/skb/kfree_skb/format`;
    const format = await readText(files, path);
    const fields = format === undefined ? [] : tracepointFields(format);
    const dropReasons = dropReasonsOfFormat(path, format);
    return {
      root,
      searched: paths.tracefsRoots,
      kfreeSkbFormat: format !== undefined,
      kfreeSkbFields: fields,
      kfreeSkbReason: fields.includes('reason'),
      netfilterDropReason: format !== undefined && /"NETFILTER_DROP"/.test(format),
      dropReasonNames: dropReasons.ok ? dropReasons.table.names : [],
      dropReasons,
      kprobeEvents: await files.exists(`${root}/kprobe_events`),
    };
  }
  return {
    root: undefined,
    searched: paths.tracefsRoots,
    kfreeSkbFormat: false,
    kfreeSkbFields: [],
    kfreeSkbReason: false,
    netfilterDropReason: false,
    dropReasonNames: [],
    dropReasons: dropReasonsOfFormat(
      `${paths.tracefsRoots.join(' or ')} events/skb/kfree_skb/format`,
      undefined,
    ),
    kprobeEvents: false,
  };
}

/** The field names of a tracepoint format file (`field:TYPE NAME[N];`), without `common_` ones. */
export function tracepointFields(format: string): string[] {
  const fields: string[] = [];
  for (const match of format.matchAll(
    /^\s*field:[^;]*?([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?;/gm,
  )) {
    const name = match[1];
    if (name !== undefined && !name.startsWith('common_')) fields.push(name);
  }
  return fields;
}

/**
 * The headers bpftrace needs to `#include` kernel structs: `/lib/modules/<release>/build`
 * (with `source` beside it where the distribution splits them, as Debian does), else
 * `/usr/src/linux-headers-<release>`.
 */
async function detectKernelHeaders(
  files: CapabilityFiles,
  paths: CapabilityPaths,
  release: string | undefined,
): Promise<KernelHeaders | undefined> {
  if (release === undefined) return undefined;
  const build = `${paths.modulesRoot}/${release}/build`;
  if (await files.exists(`${build}/Makefile`)) {
    const source = `${paths.modulesRoot}/${release}/source`;
    return { source: (await files.exists(`${source}/Makefile`)) ? source : build, build };
  }
  const usrSrc = `${paths.usrSrcRoot}/linux-headers-${release}`;
  if (await files.exists(`${usrSrc}/Makefile`)) return { source: usrSrc, build: usrSrc };
  return undefined;
}

async function detectConntrackStatColumns(
  files: CapabilityFiles,
  paths: CapabilityPaths,
): Promise<readonly string[] | undefined> {
  const text = await readText(files, `${paths.procRoot}/net/stat/nf_conntrack`);
  const header = text?.split('\n')[0]?.trim();
  return header === undefined || header === '' ? undefined : header.split(/\s+/);
}

function commandFailure(outcome: CommandOutcome, timeoutMs: number): string {
  if (outcome.startError !== undefined) return outcome.startError;
  if (outcome.timedOut) return `did not finish within ${timeoutMs} ms`;
  return `exit code ${outcome.exitCode ?? 'none'}`;
}

async function detectBpftrace(
  run: CommandRunner,
  path: string,
  timeoutMs: number,
): Promise<BpftraceCapability> {
  const outcome = await run(path, ['--info'], { timeoutMs });
  if (outcome.exitCode !== 0) {
    const detail = bpftraceErrorText(outcome.stderr, '');
    const failure = commandFailure(outcome, timeoutMs);
    return {
      available: false,
      path,
      error: `${path} --info failed: ${detail === '' ? failure : `${failure}: ${detail}`}`,
    };
  }
  // bpftrace 0.17 prints --info on stderr; later versions on stdout.
  const info = parseBpftraceInfo(`${outcome.stdout}\n${outcome.stderr}`);
  return {
    available: true,
    path,
    version: info.version,
    kprobe: bpftraceInfoFlag(info, 'probe types', 'kprobe'),
    tracepoint: bpftraceInfoFlag(info, 'probe types', 'tracepoint'),
    kfunc:
      bpftraceInfoFlag(info, 'probe types', 'kfunc') ??
      bpftraceInfoFlag(info, 'probe types', 'fentry'),
    btf: bpftraceInfoFlag(info, 'kernel features', 'btf'),
    info,
  };
}

const NOISE = [
  // Printed at every start on kernels that account BPF memory by cgroup; not fatal.
  /RLIMIT_MEMLOCK/,
  // Printed for every kprobe when available_filter_functions is unreadable, attachable or not.
  /WARNING: .* is not traceable/,
  /^\s*~+\s*$/,
];

/** bpftrace's stderr without its start-up noise and the echo of the program. */
export function bpftraceErrorText(stderr: string, program: string): string {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && line !== program.trim())
    .filter((line) => !NOISE.some((pattern) => pattern.test(line)))
    .join('; ');
}

/**
 * The program of a test-attach: the probes with empty bodies and a BEGIN that exits. bpftrace
 * runs BEGIN only after every probe attached, so it exits 0 at once when they all attach and
 * fails before BEGIN when one does not — without waiting for the function to be called.
 */
export function testAttachProgram(probes: readonly string[]): string {
  return `${probes.map((probe) => `${probe} {}`).join(' ')} BEGIN { exit(); }`;
}

async function testAttach(
  run: CommandRunner,
  path: string,
  probes: readonly string[],
  timeoutMs: number,
): Promise<AttachOutcome> {
  const program = testAttachProgram(probes);
  const outcome = await run(path, ['-e', program], { timeoutMs });
  if (outcome.exitCode === 0 && !outcome.timedOut) {
    return { attached: true, probes, durationMs: outcome.durationMs };
  }
  const detail = bpftraceErrorText(outcome.stderr, program);
  const failure = commandFailure(outcome, timeoutMs);
  return {
    attached: false,
    attempted: true,
    probes,
    durationMs: outcome.durationMs,
    error: detail === '' ? failure : detail,
  };
}

function notAttempted(reason: string): Record<KprobeTarget, AttachOutcome> {
  const outcome = (target: KprobeTarget): AttachOutcome => ({
    attached: false,
    attempted: false,
    probes: kprobeAttachTargets[target],
    durationMs: 0,
    error: reason,
  });
  return {
    'conntrack-confirm': outcome('conntrack-confirm'),
    'clash-resolved': outcome('clash-resolved'),
    'snat-port-alloc': outcome('snat-port-alloc'),
  };
}

async function detectKprobeAttach(
  run: CommandRunner,
  bpftrace: BpftraceCapability,
  timeoutMs: number,
): Promise<Record<KprobeTarget, AttachOutcome>> {
  if (!bpftrace.available) return notAttempted(`not attempted: ${bpftrace.error}`);
  if (bpftrace.kprobe === false) {
    return notAttempted('not attempted: bpftrace --info reports kprobe: no');
  }
  const [confirm, clash, snat] = await Promise.all([
    testAttach(run, bpftrace.path, kprobeAttachTargets['conntrack-confirm'], timeoutMs),
    testAttach(run, bpftrace.path, kprobeAttachTargets['clash-resolved'], timeoutMs),
    testAttach(run, bpftrace.path, kprobeAttachTargets['snat-port-alloc'], timeoutMs),
  ]);
  return { 'conntrack-confirm': confirm, 'clash-resolved': clash, 'snat-port-alloc': snat };
}

/**
 * Reads what this kernel and this bpftrace can do, from files and from bpftrace itself. It
 * test-attaches kprobes rather than trusting `--info` (which says `kprobe: yes` on kernels
 * built without kprobes) and never lists probes (`bpftrace -l` aborts where
 * available_filter_functions is unreadable). Never throws: what cannot be read is reported
 * as absent.
 */
export async function detectCapabilities(
  options: DetectCapabilitiesOptions,
): Promise<KernelCapabilities> {
  const paths = options.paths ?? defaultCapabilityPaths;
  const { files, run } = options;
  const kernelRelease = await detectKernelRelease(files, paths);
  const vmlinuxBtfPath = `${paths.sysRoot}/kernel/btf/vmlinux`;
  const [
    kernelConfig,
    btf,
    nfConntrackBtf,
    kernelHeaders,
    tracefs,
    conntrackStatColumns,
    bpftrace,
  ] = await Promise.all([
    detectKernelConfig(files, paths, kernelRelease),
    files.exists(vmlinuxBtfPath),
    files.exists(`${paths.sysRoot}/kernel/btf/nf_conntrack`),
    detectKernelHeaders(files, paths, kernelRelease),
    detectTracefs(files, paths),
    detectConntrackStatColumns(files, paths),
    detectBpftrace(run, options.bpftracePath, options.infoTimeoutMs ?? DEFAULT_INFO_TIMEOUT_MS),
  ]);
  const vmlinuxBtf = btf ? await files.read(vmlinuxBtfPath) : undefined;
  const nfConnInVmlinuxBtf =
    vmlinuxBtf === undefined ? undefined : btfDefinesStruct(vmlinuxBtf, 'nf_conn');
  const kprobeAttach = await detectKprobeAttach(
    run,
    bpftrace,
    options.attachTimeoutMs ?? DEFAULT_ATTACH_TIMEOUT_MS,
  );
  return {
    kernelRelease,
    kernelVersion: kernelRelease === undefined ? undefined : parseKernelRelease(kernelRelease),
    btf,
    vmlinuxBtfPath,
    nfConntrackBtf,
    nfConnInVmlinuxBtf,
    kernelHeaders,
    kernelConfig,
    bpftrace,
    tracefs,
    conntrackStatColumns,
    kprobeAttach,
  };
}
