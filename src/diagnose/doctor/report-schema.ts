/**
 * The JSON Schema (draft-07) of `doctor --json`. Exported so that consumers can validate what
 * they parse; the tests validate reports against it.
 *
 * The types (report.ts, events/diagnosis.ts) are the one source: each part below is declared as
 * ajv's `JSONSchemaType` of its type, so the compiler rejects a schema that leaves out or
 * mistypes a property of the type, or that requires an optional one. It does not see a required
 * property missing from `required`, nor a property the type lacks: the unit test of the schema
 * checks those against a built report. The import is a type only, erased from the build: ajv
 * stays a development dependency and the agent never validates at run time. ajv's typing marks
 * each optional property `nullable: true` (so `null` is admitted there).
 */
import type { JSONSchemaType } from 'ajv';
import type {
  ContainerDiagnosis,
  KernelFacts,
  NatRule,
  NodeDiagnosis,
  PodDiagnosis,
  PodDnsSpec,
  ResolvConf,
} from '../../events/diagnosis.js';
import type { Remedy } from '../../events/advice.js';
import type { CounterRates, DoctorPod, DoctorReport, Finding } from './report.js';
import type { ReproduceReport } from '../reproduce/run-reproduce.js';
import type { DoctorKubernetes, DoctorKubernetesPod } from './kubernetes-pods.js';

const strings = { type: 'array', items: { type: 'string' } } as const;

const remedy: JSONSchemaType<Remedy> = {
  type: 'object',
  required: ['id', 'text', 'source'],
  properties: {
    id: { type: 'string' },
    text: { type: 'string' },
    yaml: { type: 'string', nullable: true },
    source: { type: 'string' },
  },
  additionalProperties: false,
};

const natBackend = {
  type: 'string',
  enum: ['iptables-legacy', 'iptables-nft', 'ip6tables-legacy', 'ip6tables-nft', 'nftables'],
} as const;

const natRule: JSONSchemaType<NatRule> = {
  type: 'object',
  required: ['backend', 'family', 'table', 'chain', 'target', 'randomFully', 'text'],
  properties: {
    backend: natBackend,
    family: { type: 'string', enum: ['ipv4', 'ipv6', 'both'] },
    table: { type: 'string' },
    chain: { type: 'string' },
    target: { type: 'string', enum: ['MASQUERADE', 'SNAT'] },
    randomFully: { type: 'boolean' },
    text: { type: 'string' },
  },
  additionalProperties: false,
};

const resolvConf: JSONSchemaType<ResolvConf> = {
  type: 'object',
  required: ['nameservers', 'search', 'options', 'warnings'],
  properties: {
    nameservers: strings,
    search: strings,
    options: {
      type: 'object',
      required: [
        'ndots',
        'timeout',
        'attempts',
        'singleRequest',
        'singleRequestReopen',
        'useVc',
        'rotate',
        'edns0',
      ],
      properties: {
        ndots: { type: 'integer', minimum: 0, maximum: 15 },
        timeout: { type: 'integer', minimum: 1, maximum: 30 },
        attempts: { type: 'integer', minimum: 1, maximum: 5 },
        singleRequest: { type: 'boolean' },
        singleRequestReopen: { type: 'boolean' },
        useVc: { type: 'boolean' },
        rotate: { type: 'boolean' },
        edns0: { type: 'boolean' },
      },
      additionalProperties: false,
    },
    warnings: strings,
  },
  additionalProperties: false,
};

const container: JSONSchemaType<ContainerDiagnosis> = {
  type: 'object',
  required: ['pid', 'name', 'libc', 'nameservers'],
  properties: {
    pid: { type: 'integer' },
    name: { type: 'string' },
    libc: {
      type: 'object',
      required: ['kind'],
      properties: {
        kind: { type: 'string', enum: ['musl', 'glibc', 'static', 'unknown'] },
        version: { type: 'string', nullable: true },
        evidence: { type: 'string', nullable: true },
      },
      additionalProperties: false,
    },
    resolvConf: { ...resolvConf, nullable: true },
    nameservers: {
      type: 'array',
      items: {
        type: 'object',
        required: ['address', 'kind'],
        properties: {
          address: { type: 'string' },
          kind: { type: 'string', enum: ['nodelocal', 'cluster-dns', 'loopback', 'other'] },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
};

const podDnsSpec: JSONSchemaType<PodDnsSpec> = {
  type: 'object',
  required: ['hostNetwork'],
  properties: {
    dnsPolicy: { type: 'string', nullable: true },
    hostNetwork: { type: 'boolean' },
    dnsConfig: {
      type: 'object',
      nullable: true,
      required: [],
      properties: {
        nameservers: { ...strings, nullable: true },
        searches: { ...strings, nullable: true },
        options: {
          type: 'array',
          nullable: true,
          items: {
            type: 'object',
            required: ['name'],
            properties: {
              name: { type: 'string' },
              value: { type: 'string', nullable: true },
            },
            additionalProperties: false,
          },
        },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
};

const podDiagnosis: JSONSchemaType<PodDiagnosis> = {
  type: 'object',
  required: ['status', 'foundBy', 'containers', 'diagnosedAtMs'],
  properties: {
    status: { type: 'string', const: 'diagnosed' },
    foundBy: { type: 'string', enum: ['pod-uid', 'pod-ip', 'netns'] },
    netnsInode: { type: 'integer', nullable: true },
    containers: { type: 'array', items: container },
    spec: { ...podDnsSpec, nullable: true },
    diagnosedAtMs: { type: 'number' },
  },
  additionalProperties: false,
};

const kernelFacts: JSONSchemaType<KernelFacts> = {
  type: 'object',
  required: [
    'release',
    'resolvesMatchingClashes',
    'resolvesNatClashes',
    'hasClashResolveCounter',
    'hasDropReasons',
  ],
  properties: {
    release: { type: 'string' },
    resolvesMatchingClashes: { type: 'boolean' },
    resolvesNatClashes: { type: 'boolean' },
    hasClashResolveCounter: { type: 'boolean' },
    hasDropReasons: { type: 'boolean' },
  },
  additionalProperties: false,
};

const nodeDiagnosis: JSONSchemaType<NodeDiagnosis> = {
  type: 'object',
  required: [
    'status',
    'natRules',
    'natSources',
    'kubeProxyMode',
    'nodeLocalDns',
    'conntrack',
    'diagnosedAtMs',
  ],
  properties: {
    status: { type: 'string', const: 'diagnosed' },
    kernel: { ...kernelFacts, nullable: true },
    natRules: { type: 'array', items: natRule },
    natSources: {
      type: 'array',
      items: {
        type: 'object',
        required: ['backend', 'read'],
        properties: {
          backend: natBackend,
          read: { type: 'boolean' },
          detail: { type: 'string', nullable: true },
        },
        additionalProperties: false,
      },
    },
    kubeProxyMode: { type: 'string', enum: ['iptables', 'ipvs', 'nftables', 'none-visible'] },
    nodeLocalDns: {
      type: 'object',
      required: ['present', 'addresses'],
      properties: {
        present: { type: 'boolean' },
        addresses: strings,
      },
      additionalProperties: false,
    },
    conntrack: {
      type: 'object',
      required: [],
      properties: {
        entries: { type: 'integer', minimum: 0, nullable: true },
        max: { type: 'integer', minimum: 0, nullable: true },
        headroom: { type: 'number', minimum: 0, maximum: 1, nullable: true },
        udpTimeoutSeconds: { type: 'integer', nullable: true },
        udpStreamTimeoutSeconds: { type: 'integer', nullable: true },
      },
      additionalProperties: false,
    },
    diagnosedAtMs: { type: 'number' },
  },
  additionalProperties: false,
};

const rates = {
  type: 'object',
  required: [],
  additionalProperties: { type: 'number', minimum: 0 },
} as const;

const counterRates: JSONSchemaType<CounterRates> = {
  type: 'object',
  required: ['intervalSeconds', 'totals', 'perSecond'],
  properties: {
    intervalSeconds: { type: 'number', exclusiveMinimum: 0 },
    totals: rates,
    perSecond: rates,
  },
  additionalProperties: false,
};

const doctorPod: JSONSchemaType<DoctorPod> = {
  type: 'object',
  required: ['subject', 'addresses', 'diagnosis', 'summary', 'remedies', 'notes'],
  properties: {
    subject: { type: 'string' },
    addresses: strings,
    diagnosis: podDiagnosis,
    summary: { type: 'string' },
    remedies: { type: 'array', items: remedy },
    notes: strings,
  },
  additionalProperties: false,
};

const finding: JSONSchemaType<Finding> = {
  type: 'object',
  required: ['id', 'subject', 'text', 'remedies'],
  properties: {
    id: { type: 'string' },
    subject: { type: 'string' },
    text: { type: 'string' },
    remedies: { type: 'array', items: remedy },
  },
  additionalProperties: false,
};

/** `--reproduce`: the lab's scenarios and the verdict on each (optional section). */
const reproduce: JSONSchemaType<ReproduceReport> = {
  type: 'object',
  required: ['namespaces', 'staleRemoved', 'secondsPerScenario', 'generators', 'scenarios'],
  properties: {
    namespaces: { type: 'array', items: { type: 'string', pattern: '^cro-repro-' } },
    staleRemoved: { type: 'array', items: { type: 'string', pattern: '^cro-repro-' } },
    secondsPerScenario: { type: 'integer', minimum: 1 },
    generators: {
      type: 'object',
      required: ['origin', 'dir'],
      properties: {
        origin: { type: 'string', enum: ['installed', 'built'] },
        dir: { type: 'string' },
      },
      additionalProperties: false,
    },
    scenarios: {
      type: 'array',
      items: {
        type: 'object',
        required: [
          'scenario',
          'rounds',
          'batches',
          'durationMs',
          'datagramsSent',
          'sendErrors',
          'dropped',
          'resolved',
          'kernel',
          'hasClashResolveCounter',
          'enough',
          'verdict',
          'remedies',
          'notes',
        ],
        properties: {
          scenario: { type: 'string', enum: ['snat-race', 'dnat-clash'] },
          rounds: { type: 'integer', minimum: 0 },
          batches: { type: 'integer', minimum: 0 },
          durationMs: { type: 'number', minimum: 0 },
          datagramsSent: { type: 'integer', minimum: 0 },
          sendErrors: { type: 'integer', minimum: 0 },
          dropped: { type: 'integer', minimum: 0 },
          resolved: { type: 'integer', minimum: 0 },
          kernel: { type: 'object', required: [], additionalProperties: { type: 'integer' } },
          hasClashResolveCounter: { type: 'boolean' },
          enough: { type: 'boolean' },
          verdict: {
            type: 'object',
            required: ['id', 'text'],
            properties: {
              id: {
                type: 'string',
                enum: [
                  'drops-snat-races',
                  'no-snat-drop-seen',
                  'drops-dnat-clashes',
                  'resolves-dnat-clashes',
                  'no-dnat-clash-seen',
                ],
              },
              text: { type: 'string' },
            },
            additionalProperties: false,
          },
          remedies: { type: 'array', items: remedy },
          notes: { type: 'array', items: { type: 'string' } },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
};

const kubernetesPod: JSONSchemaType<DoctorKubernetesPod> = {
  type: 'object',
  required: [
    'namespace',
    'name',
    'uid',
    'spec',
    'read',
    'containers',
    'summary',
    'remedies',
    'notes',
  ],
  properties: {
    namespace: { type: 'string' },
    name: { type: 'string' },
    uid: { type: 'string' },
    spec: podDnsSpec,
    read: { type: 'boolean' },
    foundBy: { type: 'string', enum: ['pod-uid', 'pod-ip', 'netns'], nullable: true },
    notRead: { type: 'string', nullable: true },
    containers: { type: 'array', items: container },
    summary: { type: 'string' },
    remedies: { type: 'array', items: remedy },
    notes: strings,
  },
  additionalProperties: false,
};

/** `--kubeconfig` or in-cluster: this node's pods from the API (optional section). */
const kubernetes: JSONSchemaType<DoctorKubernetes> = {
  type: 'object',
  required: ['nodeName', 'source', 'server', 'pods'],
  properties: {
    nodeName: { type: 'string', minLength: 1 },
    source: { type: 'string', enum: ['flag', 'env', 'in-cluster'] },
    server: { type: 'string' },
    pods: { type: 'array', items: kubernetesPod },
  },
  additionalProperties: false,
};

export const doctorReportSchema: JSONSchemaType<DoctorReport> = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://github.com/conntrack-race-observer/doctor-report.schema.json',
  title: 'conntrack-race-observer doctor report',
  type: 'object',
  required: ['version', 'generatedAt', 'probeMode', 'node', 'pods', 'findings'],
  properties: {
    version: { type: 'integer', const: 1 },
    generatedAt: { type: 'string' },
    probeMode: {
      type: 'object',
      required: ['mode', 'reason'],
      properties: {
        mode: { type: 'string', enum: ['kprobe', 'tracepoint', 'counters-only', 'none'] },
        reason: { type: 'string' },
      },
      additionalProperties: false,
    },
    node: nodeDiagnosis,
    counters: { ...counterRates, nullable: true },
    pods: { type: 'array', items: doctorPod },
    findings: { type: 'array', items: finding },
    reproduce: { ...reproduce, nullable: true },
    kubernetes: { ...kubernetes, nullable: true },
  },
  additionalProperties: false,
};
